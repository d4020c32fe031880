package main

import (
	"fmt"

	"github.com/kiln-build/kiln/explain"
	"github.com/kiln-build/kiln/solver"
)

// explained prints why a step that started missed the cache, right after
// its "#N name" line: "#N WHY reason; reason".
func (p *progress) explained(v *solver.Vertex, why []explain.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "#%d WHY %s\n", p.num(v), explain.Summary(why))
}
