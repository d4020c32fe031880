package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestManyProcessesShareOneStore runs, five rounds over, four builds at
// once (two identical Dockerfiles in different contexts, a different one,
// all three tagging the same name, and a fourth building something new;
// two of them with a 1-byte --cache-max, so each ends with the automatic
// build cache collection) together with kiln images, save, rmi, prune and
// image prune, while a reader checks that index.json is always whole.
// Every command must succeed, the shared tag must end up naming exactly
// one of the images built for it, every earlier image must still run, and
// kiln doctor must find the store consistent after each round.
func TestManyProcessesShareOneStore(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and races many kiln processes; not in -short")
	}
	s := e2etest.NewStore(t)
	s.MustKiln("build", "-t", "small:1", e2etest.ContextDir(t, "FROM busybox\nRUN echo small > /id\n", map[string][]byte{}))
	a := "FROM busybox\nRUN echo a > /id\nRUN echo more > /more\n"
	ctxA1 := e2etest.ContextDir(t, a, map[string][]byte{})
	ctxA2 := e2etest.ContextDir(t, a, map[string][]byte{})
	ctxB := e2etest.ContextDir(t, "FROM busybox\nCOPY f /f\nRUN echo b > /id\n", map[string][]byte{"f": []byte("b")})

	// index.json must always be valid JSON, whoever is writing it.
	var reads, broken atomic.Int64
	var firstBroken atomic.Value
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p := filepath.Join(s.Root, "content", "index.json")
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p)
			var idx ocispec.Index
			if err == nil {
				err = json.Unmarshal(b, &idx)
			}
			reads.Add(1)
			if err != nil {
				broken.Add(1)
				firstBroken.CompareAndSwap(nil, fmt.Sprintf("%v: %q", err, b))
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	built := map[string]string{"small:1": "small"}
	// The end-of-build collection with a budget nothing fits in: it either
	// removes (when the store is its own) or leaves it to the last process
	// (KILN_DEBUG says so); it never warns.
	var collected, deferred atomic.Int64
	gcRan := regexp.MustCompile(`build cache .* over its budget .*: removed `)
	for round := 1; round <= 5; round++ {
		s.MustKiln("tag", "small:1", fmt.Sprintf("rm:%d", round))
		ctxC := e2etest.ContextDir(t, fmt.Sprintf("FROM busybox\nRUN echo c%d > /id\n", round), map[string][]byte{})
		cmds := [][]string{
			{"build", "-t", "con:same", ctxA1},
			{"build", "--cache-max", "1B", "-t", "con:same", ctxA2},
			{"build", "-t", "con:same", ctxB},
			{"build", "--cache-max", "1B", "-t", fmt.Sprintf("con:r%d", round), ctxC},
			{"images"},
			{"images", "-a", "--digests", "--filter", "dangling=false"},
			{"save", "-o", filepath.Join(t.TempDir(), "small.tar"), "small:1"},
			{"rmi", fmt.Sprintf("rm:%d", round)},
			{"prune", "-f"},
			{"image", "prune", "-f"},
		}
		var wg sync.WaitGroup
		for _, args := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(e2etest.Bin(), append([]string{"--root", s.Root}, args...)...)
				cmd.Env = append(os.Environ(), "KILN_DEBUG=1")
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Errorf("round %d: kiln %s: %v\n%s%s", round, strings.Join(args, " "), err, stdout.String(), stderr.String())
					return
				}
				errOut := stderr.String()
				if strings.Contains(errOut, "WARNING") {
					t.Errorf("round %d: kiln %s warned:\n%s", round, strings.Join(args, " "), errOut)
				}
				if contains(args, "--cache-max") {
					switch {
					case gcRan.MatchString(errOut):
						collected.Add(1)
					case strings.Contains(errOut, "over its budget 1B, but other kiln processes are using the store"):
						deferred.Add(1)
					default:
						t.Errorf("round %d: kiln %s: no word of the build cache collection:\n%s", round, strings.Join(args, " "), errOut)
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			break
		}
		built[fmt.Sprintf("con:r%d", round)] = fmt.Sprintf("c%d", round)

		// The last tag write won, whole: one entry, one of the two images.
		b, err := os.ReadFile(filepath.Join(s.Root, "content", "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range idx.Manifests {
			if m.Annotations["io.containerd.image.name"] == "docker.io/library/con:same" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("round %d: %d index entries for con:same", round, n)
		}
		if out := s.MustKiln("run", "--rm", "con:same", "cat", "/id"); out != "a\n" && out != "b\n" {
			t.Errorf("round %d: con:same is %q", round, out)
		}
		assertImagesWork(s, built)
		s.AssertDoctorClean()
		if out, _, _ := s.Kiln("images", "-q", fmt.Sprintf("rm:%d", round)); out != "" {
			t.Errorf("round %d: rm:%d still listed", round, round)
		}
	}
	if !t.Failed() {
		// Alone on the store, a build over its budget always collects; every
		// tagged image survives it.
		_, errOut, err := s.Kiln("build", "--cache-max", "1B", "-t", "con:last", e2etest.ContextDir(t, "FROM busybox\nRUN echo last > /id\n", map[string][]byte{}))
		if err != nil || !gcRan.MatchString(errOut) {
			t.Errorf("a build alone over its budget: %v, no collection reported:\n%s", err, errOut)
		}
		built["con:last"] = "last"
		assertImagesWork(s, built)
		s.AssertDoctorClean()
	}
	close(stop)
	<-readerDone
	if broken.Load() > 0 {
		t.Errorf("index.json was unreadable %d times out of %d reads; first: %v", broken.Load(), reads.Load(), firstBroken.Load())
	}
	t.Logf("%d reads of index.json; end-of-build collections: %d removed, %d left to the last process", reads.Load(), collected.Load(), deferred.Load())
}
