package dockerfile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Dump renders a compiled build as stable, human-readable text: every
// vertex in b.Vertices order, numbered from 1, with its name, location, op
// type, inputs (by number) and cache key components, then the target, the
// skipped stages and the image config as indented JSON without its created
// times. It never touches the filesystem: a COPY/ADD from the build context
// shows the op's fields instead of its key (which hashes the files read).
// Golden tests compare it; it also helps debugging a compile.
func Dump(b *Build) string {
	var sb strings.Builder
	num := map[*solver.Vertex]int{}
	order := append([]*solver.Vertex(nil), b.Vertices...)
	dupOf := map[int]int{} // index in order → number of the same vertex listed earlier
	for i, v := range order {
		if n, ok := num[v]; ok {
			dupOf[i] = n
			continue
		}
		num[v] = i + 1
	}
	listed := len(order)
	// Inputs missing from b.Vertices still get a number, after the listed
	// vertices, and are marked: Vertices should list them.
	var walk func(v *solver.Vertex)
	seen := map[*solver.Vertex]bool{}
	walk = func(v *solver.Vertex) {
		if v == nil || seen[v] {
			return
		}
		seen[v] = true
		if _, ok := num[v]; !ok {
			order = append(order, v)
			num[v] = len(order)
		}
		for _, in := range v.Inputs {
			walk(in)
		}
	}
	for _, v := range b.Vertices {
		walk(v)
	}
	walk(b.Target)

	for i, v := range order {
		fmt.Fprintf(&sb, "#%d %s\n", i+1, v.Name)
		if n, ok := dupOf[i]; ok {
			fmt.Fprintf(&sb, "  (listed again: the same vertex as #%d)\n", n)
			continue
		}
		if i >= listed {
			sb.WriteString("  (not in Build.Vertices)\n")
		}
		field(&sb, "location", v.Location)
		field(&sb, "op", fmt.Sprintf("%T", v.Op))
		var flags []string
		if v.Source {
			flags = append(flags, "source")
		}
		if v.NoCache {
			flags = append(flags, "no-cache")
		}
		if len(flags) > 0 {
			field(&sb, "flags", strings.Join(flags, " "))
		}
		if len(v.Inputs) > 0 {
			var ins []string
			for _, in := range v.Inputs {
				ins = append(ins, "#"+strconv.Itoa(num[in]))
			}
			field(&sb, "inputs", strings.Join(ins, " "))
		}
		dumpOp(&sb, v.Op)
	}
	if b.Target != nil {
		fmt.Fprintf(&sb, "target: #%d\n", num[b.Target])
	}
	if len(b.SkippedStages) > 0 {
		fmt.Fprintf(&sb, "skipped stages: %s\n", strings.Join(b.SkippedStages, ", "))
	}

	img := b.Image
	img.Created = nil
	img.History = append([]ocispec.History(nil), b.Image.History...)
	for i := range img.History {
		img.History[i].Created = nil
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(img); err != nil {
		fmt.Fprintf(&sb, "image: error: %v\n", err)
	} else {
		fmt.Fprintf(&sb, "image:\n%s", js.Bytes())
	}
	return sb.String()
}

// dumpOp writes an op definition's key components, or for a copy from the
// build context (whose key hashes files) its definition. A download's key
// is its fetched content: it has none before it runs.
func dumpOp(sb *strings.Builder, op any) {
	if c, ok := op.(*ops.Copy); ok && c.Context != nil {
		field(sb, "from", "build context")
		field(sb, "sources", jsonString(c.Sources))
		field(sb, "dest", c.Dest)
		field(sb, "chown", c.Chown)
		field(sb, "chmod", c.Chmod)
		field(sb, "add", strconv.FormatBool(c.Add))
		return
	}
	keyed, ok := op.(interface {
		CacheKey(context.Context) ([]record.Component, error)
	})
	if !ok {
		return
	}
	comps, err := keyed.CacheKey(context.Background())
	if err != nil {
		field(sb, "key error", err.Error())
		return
	}
	for _, c := range comps {
		field(sb, "key "+c.Name, c.Value)
	}
}

func field(sb *strings.Builder, name, value string) {
	if strings.ContainsAny(value, "\n\r\t") {
		value = strconv.Quote(value)
	}
	if value == "" {
		fmt.Fprintf(sb, "  %s:\n", name)
		return
	}
	fmt.Fprintf(sb, "  %s: %s\n", name, value)
}

func jsonString(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
