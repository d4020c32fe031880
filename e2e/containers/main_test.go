package containers

import (
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }
