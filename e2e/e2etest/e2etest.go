// Package e2etest holds the helpers that kiln's end-to-end test packages
// (e2e/...) share: the kiln binary those tests run (built once per test
// process by Main), a private store to run it on (Store), build contexts
// and tar archives to feed it, and readers of what it writes.
//
// What the machine must provide — root, runc, busybox, a dockerd, a
// registry — comes from internal/testenv, which the unit tests of other
// packages use too; this package is only about driving the kiln binary.
// Every e2e package starts with
//
//	func TestMain(m *testing.M) { e2etest.Main(m) }
package e2etest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

var kilnBin string

// Main builds the kiln binary, runs the tests, then stops the shared
// dockerd and removes testenv's scratch files (the busybox tar) and the
// binary. Call it from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kilnBin = filepath.Join(dir, "kiln")
	if out, err := exec.Command("go", "build", "-o", kilnBin, "github.com/kiln-build/kiln/cmd/kiln").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kiln: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	testenv.StopShared()
	testenv.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Bin is the path of the kiln binary that Main built.
func Bin() string { return kilnBin }
