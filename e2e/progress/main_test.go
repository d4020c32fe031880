// Package progress tests kiln build's --progress modes end to end: real
// builds on a busybox base, the tty view read through a real
// pseudo-terminal.
package progress

import (
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }
