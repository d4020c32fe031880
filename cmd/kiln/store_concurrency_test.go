package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestManyProcessesShareOneStore runs, five rounds over, four builds at
// once (two identical Dockerfiles in different contexts, a different one,
// all three tagging the same name, and a fourth building something new)
// together with kiln images, save, rmi and prune, while a reader checks
// that index.json is always whole. Every command must succeed, the shared
// tag must end up naming exactly one of the images built for it, every
// earlier image must still run, and kiln doctor must find the store
// consistent after each round.
func TestManyProcessesShareOneStore(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and races many kiln processes; not in -short")
	}
	s := newStore(t)
	s.mustKiln("build", "-t", "small:1", contextDir(t, "FROM busybox\nRUN echo small > /id\n", map[string][]byte{}))
	_, _, pruneErr := s.kiln("prune", "--help")
	hasPrune := pruneErr == nil
	a := "FROM busybox\nRUN echo a > /id\nRUN echo more > /more\n"
	ctxA1 := contextDir(t, a, map[string][]byte{})
	ctxA2 := contextDir(t, a, map[string][]byte{})
	ctxB := contextDir(t, "FROM busybox\nCOPY f /f\nRUN echo b > /id\n", map[string][]byte{"f": []byte("b")})

	// index.json must always be valid JSON, whoever is writing it.
	var reads, broken atomic.Int64
	var firstBroken atomic.Value
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p := filepath.Join(s.root, "content", "index.json")
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
	for round := 1; round <= 5; round++ {
		s.mustKiln("tag", "small:1", fmt.Sprintf("rm:%d", round))
		ctxC := contextDir(t, fmt.Sprintf("FROM busybox\nRUN echo c%d > /id\n", round), map[string][]byte{})
		cmds := [][]string{
			{"build", "-t", "con:same", ctxA1},
			{"build", "-t", "con:same", ctxA2},
			{"build", "-t", "con:same", ctxB},
			{"build", "-t", fmt.Sprintf("con:r%d", round), ctxC},
			{"images"},
			{"images", "-a", "--digests", "--filter", "dangling=false"},
			{"save", "-o", filepath.Join(t.TempDir(), "small.tar"), "small:1"},
			{"rmi", fmt.Sprintf("rm:%d", round)},
		}
		if hasPrune {
			cmds = append(cmds, []string{"prune", "-f"})
		}
		var wg sync.WaitGroup
		for _, args := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, errOut, err := s.kiln(args...); err != nil {
					t.Errorf("round %d: kiln %s: %v\n%s%s", round, strings.Join(args, " "), err, out, errOut)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			break
		}
		built[fmt.Sprintf("con:r%d", round)] = fmt.Sprintf("c%d", round)

		// The last tag write won, whole: one entry, one of the two images.
		b, err := os.ReadFile(filepath.Join(s.root, "content", "index.json"))
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
		if out := s.mustKiln("run", "--rm", "con:same", "cat", "/id"); out != "a\n" && out != "b\n" {
			t.Errorf("round %d: con:same is %q", round, out)
		}
		s.assertImagesWork(built)
		s.assertDoctorClean()
		if out, _, _ := s.kiln("images", "-q", fmt.Sprintf("rm:%d", round)); out != "" {
			t.Errorf("round %d: rm:%d still listed", round, round)
		}
	}
	close(stop)
	<-readerDone
	if broken.Load() > 0 {
		t.Errorf("index.json was unreadable %d times out of %d reads; first: %v", broken.Load(), reads.Load(), firstBroken.Load())
	}
	t.Logf("%d reads of index.json, prune ran: %v", reads.Load(), hasPrune)
}
