package analyze

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// report is the part of kiln layers --json that the tests read.
type report struct {
	Layers []struct {
		Index     int    `json:"index"`
		DiffID    string `json:"diff_id"`
		CreatedBy string `json:"created_by"`
		Size      int64  `json:"size"`
		Wasted    int64  `json:"wasted"`
		Largest   []struct {
			Path string `json:"path"`
			Size int64  `json:"size"`
		} `json:"largest"`
	} `json:"layers"`
	Size        int64   `json:"size"`
	WastedBytes int64   `json:"wasted_bytes"`
	Efficiency  float64 `json:"efficiency"`
	Wasted      []struct {
		Path          string `json:"path"`
		Size          int64  `json:"size"`
		How           string `json:"how"`
		AddedBy       int    `json:"added_by"`
		AddedByLine   string `json:"added_by_line"`
		RemovedBy     int    `json:"removed_by"`
		RemovedByLine string `json:"removed_by_line"`
	} `json:"wasted"`
}

type change struct {
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	Before *struct {
		Size   int64  `json:"size"`
		Digest string `json:"digest"`
	} `json:"before"`
	After *struct {
		Size   int64  `json:"size"`
		Digest string `json:"digest"`
	} `json:"after"`
	What []string `json:"what"`
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatalf("kiln did not run: %v", err)
	}
	return ee.ExitCode()
}

const wastefulDockerfile = `FROM busybox
RUN dd if=/dev/zero of=/big.bin bs=1M count=50
RUN rm /big.bin && echo done > /done
`

func TestLayersReportsA50MBFileAddedAndRemovedAsWastedWithBothLines(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-q", "-t", "wasteful", e2etest.TextContext(t, map[string]string{"Dockerfile": wastefulDockerfile}))

	var rep report
	out := s.MustKiln("layers", "--json", "wasteful")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("layers --json: %v\n%s", err, out)
	}
	const big = 50 << 20
	if len(rep.Wasted) != 1 {
		t.Fatalf("wasted rows %+v, want the one of /big.bin", rep.Wasted)
	}
	w := rep.Wasted[0]
	if w.Path != "/big.bin" || w.Size != big || w.How != "deleted" || w.AddedBy != 2 || w.RemovedBy != 3 ||
		!strings.Contains(w.AddedByLine, "dd if=/dev/zero of=/big.bin") || !strings.Contains(w.RemovedByLine, "rm /big.bin") {
		t.Errorf("waste %+v", w)
	}
	if rep.WastedBytes != big || rep.Layers[1].Wasted != big {
		t.Errorf("wasted %d, layer 2 wasted %d; want %d", rep.WastedBytes, rep.Layers[1].Wasted, big)
	}
	if want := 100 * (1 - float64(big)/float64(rep.Size)); rep.Efficiency < want-0.001 || rep.Efficiency > want+0.001 || rep.Efficiency > 10 {
		t.Errorf("efficiency %.3f%%, want %.3f%%", rep.Efficiency, want)
	}
	if l := rep.Layers[1]; len(l.Largest) == 0 || l.Largest[0].Path != "/big.bin" || l.Largest[0].Size != big {
		t.Errorf("layer 2's largest paths %+v", l.Largest)
	}

	// the report is about the image inspect shows: its layers, its size
	ins := s.Inspect("wasteful")
	diffIDs := e2etest.ToStrings(ins["RootFS"].(map[string]any)["Layers"])
	if len(rep.Layers) != len(diffIDs) {
		t.Fatalf("%d layers reported, inspect has %d", len(rep.Layers), len(diffIDs))
	}
	for i, l := range rep.Layers {
		if l.DiffID != diffIDs[i] || l.Index != i+1 {
			t.Errorf("layer %d: %s, inspect has %s", l.Index, l.DiffID, diffIDs[i])
		}
	}
	if size := int64(ins["Size"].(float64)); rep.Size != size {
		t.Errorf("size %d, inspect says %d", rep.Size, size)
	}
	if rep.Layers[0].CreatedBy != "kiln import" {
		t.Errorf("base layer made by %q", rep.Layers[0].CreatedBy)
	}

	// the table says the same
	text := s.MustKiln("layers", "wasteful")
	for _, want := range []string{"LAYER", "CREATED BY", "WASTED", "Wasted: 52.4MB", "Efficiency: ",
		"52.4MB    1         /big.bin   deleted   2: RUN /bin/sh -c dd if=/dev/zero", "3: RUN /bin/sh -c rm /big.bin"} {
		if !strings.Contains(text, want) {
			t.Errorf("kiln layers lacks %q:\n%s", want, text)
		}
	}
}

// appContext is a build context of a Dockerfile and app.txt.
func appContext(t *testing.T, dockerfile, app string) string {
	t.Helper()
	return e2etest.TextContext(t, map[string]string{"Dockerfile": dockerfile, "app.txt": app})
}

func TestDiffNamesWhatTheSecondBuildAddedChangedAndDeleted(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-q", "-t", "app:1", appContext(t, `FROM busybox
COPY app.txt /app/app.txt
RUN echo old > /etc/old && echo '#!/bin/sh' > /etc/script
`, "v1\n"))
	s.MustKiln("build", "-q", "-t", "app:2", appContext(t, `FROM busybox
COPY app.txt /app/app.txt
RUN echo '#!/bin/sh' > /etc/script && chmod 755 /etc/script && echo new > /app/new.txt && rm /bin/vi
`, "version 2, longer\n"))

	short := func(s string) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s)))[:19] + "…" }
	want := strings.Join([]string{
		"C /app/app.txt (size 3B → 18B, " + short("v1\n") + " → " + short("version 2, longer\n") + ")",
		"A /app/new.txt (4B)",
		"D /bin/vi",
		"D /etc/old",
		"C /etc/script (mode -rw-r--r-- → -rwxr-xr-x)",
	}, "\n") + "\n"
	if got := s.MustKiln("diff", "app:1", "app:2"); got != want {
		t.Errorf("kiln diff app:1 app:2:\n%s\nwant:\n%s", got, want)
	}

	var changes []change
	out := s.MustKiln("diff", "--json", "app:2", "app:1")
	if err := json.Unmarshal([]byte(out), &changes); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, out)
	}
	var kinds []string
	for _, c := range changes {
		kinds = append(kinds, c.Kind+" "+c.Path)
	}
	if got, want := strings.Join(kinds, ", "), "C /app/app.txt, D /app/new.txt, A /bin/vi, A /etc/old, C /etc/script"; got != want {
		t.Errorf("reverse diff %s, want %s", got, want)
	}
	if c := changes[0]; c.Before == nil || c.After == nil || c.Before.Size != 18 || c.After.Size != 3 ||
		c.After.Digest != fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("v1\n"))) {
		t.Errorf("app.txt change %+v %+v %+v", c, c.Before, c.After)
	}

	if out := s.MustKiln("diff", "app:1", "app:1"); out != "" {
		t.Errorf("an image differs from itself:\n%s", out)
	}
}

// buildOn builds the same context on s as tag with env, and brings the
// image into dst through save and load.
func buildOn(t *testing.T, s, dst *e2etest.Store, env []string, dir, tag string) {
	t.Helper()
	if out, errOut, err := s.KilnEnv(env, "build", "-q", "-t", tag, dir); err != nil {
		t.Fatalf("build: %v\n%s%s", err, out, errOut)
	}
	if s == dst {
		return
	}
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	s.MustKiln("save", "-o", tarPath, tag)
	dst.MustKiln("load", "-q", "-i", tarPath)
}

func TestDiffOfOneDockerfileBuiltOnTwoStoresShowsNoDifference(t *testing.T) {
	dir := appContext(t, `FROM busybox
COPY app.txt /app/
RUN mkdir -p /var/data && echo hello > /var/data/hello && rm /bin/vi
`, "app\n")
	for _, tc := range []struct {
		name     string
		one, two []string // the two builds' environments
		// same: whether the two builds' layers are byte for byte the same
		same bool
	}{
		{"SOURCE_DATE_EPOCH=0", []string{"SOURCE_DATE_EPOCH=0"}, []string{"SOURCE_DATE_EPOCH=0"}, true},
		// other epochs give other mtimes in the layers, which diff leaves out
		{"other epochs", []string{"SOURCE_DATE_EPOCH=0"}, []string{"SOURCE_DATE_EPOCH=1000000000"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			one, two := e2etest.NewStore(t), e2etest.NewStore(t)
			buildOn(t, one, one, tc.one, dir, "one:1")
			buildOn(t, two, one, tc.two, dir, "two:1")
			a := e2etest.ToStrings(one.Inspect("one:1")["RootFS"].(map[string]any)["Layers"])
			b := e2etest.ToStrings(one.Inspect("two:1")["RootFS"].(map[string]any)["Layers"])
			if same := strings.Join(a, " ") == strings.Join(b, " "); same != tc.same {
				t.Fatalf("layers the same: %v, want %v\n%v\n%v", same, tc.same, a, b)
			}
			out, errOut, err := one.Kiln("diff", "one:1", "two:1")
			if err != nil || out != "" {
				t.Errorf("kiln diff: %v\n%s%s", err, out, errOut)
			}
			if out := one.MustKiln("diff", "--json", "one:1", "two:1"); strings.TrimSpace(out) != "[]" {
				t.Errorf("kiln diff --json: %s", out)
			}
		})
	}
}

func TestLayersAndDiffRefuseBadArgumentsClearly(t *testing.T) {
	s := e2etest.NewStore(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"layers", "nosuch:1"}, "no such image: nosuch:1"},
		{[]string{"layers", "--top", "0", "busybox"}, "--top 0: must be at least 1"},
		{[]string{"layers"}, "accepts 1 arg(s), received 0"},
		{[]string{"diff", "busybox"}, "No such container: busybox (busybox is an image: kiln diff IMAGE IMAGE compares two)"},
		{[]string{"diff", "busybox", "nosuch:1"}, "no such image: nosuch:1"},
		{[]string{"diff", "a", "b", "c"}, `"kiln diff" needs a container or two images, got 3 arguments`},
	} {
		out, errOut, err := s.Kiln(tc.args...)
		if code := exitCode(t, err); code != 1 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("kiln %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
}

func TestLayersNamesEveryFileALaterRunOverwroteAndShowsTheLargestInTheTable(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-q", "-t", "rewritten", e2etest.TextContext(t, map[string]string{"Dockerfile": `FROM busybox
RUN mkdir /data && for i in $(seq 30); do echo first-$i > /data/f$i; done
RUN for i in $(seq 30); do echo second > /data/f$i; done
`}))
	var rep report
	if err := json.Unmarshal([]byte(s.MustKiln("layers", "--json", "rewritten")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Wasted) != 30 {
		t.Fatalf("%d wasted rows, want one per overwritten file: %+v", len(rep.Wasted), rep.Wasted)
	}
	var total int64
	for _, w := range rep.Wasted {
		if w.How != "overwritten" || w.AddedBy != 2 || w.RemovedBy != 3 || !strings.HasPrefix(w.Path, "/data/f") {
			t.Errorf("waste %+v", w)
		}
		total += w.Size
	}
	// "first-N\n" for N in 1..30: 9 of 8 bytes, 21 of 9
	if total != 9*8+21*9 || rep.WastedBytes != total {
		t.Errorf("wasted %d (rows add up to %d), want %d", rep.WastedBytes, total, 9*8+21*9)
	}
	text := s.MustKiln("layers", "rewritten")
	if rows := strings.Count(text, " overwritten "); rows != 20 {
		t.Errorf("table shows %d wasted rows, want the 20 largest:\n%s", rows, text)
	}
	// the rows left out: the last of the 9-byte files and the nine 8-byte ones
	if !strings.Contains(text, "… and 10 more rows (81B); --json lists them all") {
		t.Errorf("table does not say what it left out:\n%s", text)
	}
}
