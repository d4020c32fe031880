package depcheck

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kiln-build/kiln/"

// layer is one row of the architecture: the packages it holds (a prefix
// matches the package and everything below it) and what they may import
// from kiln besides themselves.
type layer struct {
	name  string
	pkgs  []string
	may   []string // allowed kiln imports, by prefix
	never []string // exceptions inside may
}

// layers, lowest first. A package belongs to the first layer that lists
// it.
var layers = []layer{
	{name: "helpers", pkgs: []string{"internal/readers", "internal/atomicfile", "internal/cells"}, may: []string{"internal/readers", "internal/atomicfile", "internal/cells"}},
	{name: "cache keys and records", pkgs: []string{"cache"}, may: []string{"internal/readers", "internal/atomicfile", "cache"}},
	{name: "store", pkgs: []string{"store"}, may: []string{"internal/readers", "internal/atomicfile", "cache", "store"}},
	{name: "solver", pkgs: []string{"solver"}, may: []string{"internal/readers", "internal/atomicfile", "cache", "store", "solver"}},
	{name: "frontend", pkgs: []string{"frontend"},
		may: []string{"internal/readers", "cache", "solver", "frontend"}, never: []string{"solver/runc"}},
	{name: "transports", pkgs: []string{"transport"},
		may: []string{"internal/readers", "internal/atomicfile", "cache", "store", "exporter/compression", "transport"}},
	{name: "exporters", pkgs: []string{"exporter"},
		may: []string{"internal/readers", "internal/atomicfile", "cache", "store", "solver/filecopy", "exporter", "transport"}},
	{name: "explanations and image analysis", pkgs: []string{"explain", "analyze"},
		may: []string{"internal/readers", "internal/atomicfile", "internal/cells", "cache", "store", "solver", "explain", "analyze"}},
	{name: "progress", pkgs: []string{"progress"},
		may: []string{"internal/cells", "cache", "solver", "explain", "progress"}},
	{name: "builder", pkgs: []string{"builder"},
		may: []string{"internal/readers", "internal/atomicfile", "cache", "store", "solver", "frontend", "transport", "exporter", "explain", "builder"}},
	{name: "containers", pkgs: []string{"container"},
		may: []string{"internal/readers", "internal/atomicfile", "cache", "store", "solver/runc", "exporter", "frontend", "transport", "container"}},
	{name: "CLI", pkgs: []string{"cmd"},
		may: []string{"internal/readers", "internal/atomicfile", "internal/cells", "cache", "store", "solver", "frontend", "transport", "exporter", "explain", "analyze", "progress", "builder", "container"}},
	// test helpers: imported by tests only (checked below)
	{name: "test helpers", pkgs: []string{"internal/testenv", "internal/depcheck", "e2e"},
		may: []string{"internal", "cache", "store", "solver", "frontend", "transport", "exporter", "explain", "analyze", "progress", "builder"}},
}

func under(pkg, prefix string) bool { return pkg == prefix || strings.HasPrefix(pkg, prefix+"/") }

func layerOf(pkg string) (int, bool) {
	for i, l := range layers {
		for _, p := range l.pkgs {
			if under(pkg, p) {
				return i, true
			}
		}
	}
	return 0, false
}

func allowed(l layer, imp string) bool {
	for _, n := range l.never {
		if under(imp, n) {
			return false
		}
	}
	for _, m := range l.may {
		if under(imp, m) {
			return true
		}
	}
	return false
}

// imports maps each kiln package (relative path) to the kiln packages its
// non-test files import; testImports likewise for its _test.go files.
func imports(t *testing.T, root string) (code, tests map[string]map[string]bool) {
	t.Helper()
	code, tests = map[string]map[string]bool{}, map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "vendor", "testdata", ".git", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		m := code
		if strings.HasSuffix(p, "_test.go") {
			m = tests
		}
		if m[rel] == nil {
			m[rel] = map[string]bool{}
		}
		for _, spec := range f.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			if imp, ok := strings.CutPrefix(path, module); ok {
				m[rel][imp] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return code, tests
}

func sorted(m map[string]map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestPackagesImportOnlyTheLayersBelowThem(t *testing.T) {
	code, tests := imports(t, "../..")
	if len(code) < 20 {
		t.Fatalf("found only %d packages; is the test run from internal/depcheck?", len(code))
	}
	for _, pkg := range sorted(code) {
		li, ok := layerOf(pkg)
		if !ok {
			t.Errorf("%s is in no layer: add it to depcheck's table and docs/architecture.md", pkg)
			continue
		}
		l := layers[li]
		for imp := range code[pkg] {
			if !allowed(l, imp) {
				t.Errorf("%s (%s) imports %s, which it must not: data flows one way (docs/architecture.md)", pkg, l.name, imp)
			}
			if il, ok := layerOf(imp); ok && layers[il].name == "test helpers" && l.name != "test helpers" {
				t.Errorf("%s imports the test helper %s outside a test", pkg, imp)
			}
		}
	}
	for _, pkg := range sorted(tests) {
		for imp := range tests[pkg] {
			if under(imp, "cmd") {
				t.Errorf("tests of %s import %s: test the CLI by running its binary", pkg, imp)
			}
			if under(imp, "e2e") && !under(imp, "e2e/e2etest") {
				t.Errorf("tests of %s import the end-to-end tests %s: shared helpers go to e2e/e2etest", pkg, imp)
			}
		}
	}
}

// The table itself must catch a violation, or the test above proves
// nothing.
func TestTheTableRefusesAnUpwardImport(t *testing.T) {
	for _, c := range []struct {
		pkg, imp string
		ok       bool
	}{
		{"store/content", "internal/atomicfile", true},
		{"store", "solver/ops", false},
		{"solver/ops", "frontend/dockerfile", false},
		{"frontend/dockerfile", "solver/runc", false},
		{"frontend/dockerfile", "store", false},
		{"cache/record", "store", false},
		{"transport/registry", "builder", false},
		{"exporter/output", "transport/registry", true},
		{"builder", "cmd/kiln", false},
	} {
		li, ok := layerOf(c.pkg)
		if !ok {
			t.Fatalf("%s: no layer", c.pkg)
		}
		if got := allowed(layers[li], c.imp); got != c.ok {
			t.Errorf("%s importing %s: allowed = %v, want %v", c.pkg, c.imp, got, c.ok)
		}
	}
}
