package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

// TestKillNineAnywhereLeavesARepairableStore kills kiln with SIGKILL at
// eleven points of its work, one after the other on one store: during the
// unpack of a base layer, a RUN, the commit of a big layer, the export of
// the image config, the tag write, a COPY of a big context file, a load, a
// save, a pull, a kiln run and an OCI export. Each point is found by
// watching the store for the work's own traces. After each kill the next
// kiln command must repair the store silently: no mount, no container, no
// process left, kiln doctor finds it consistent, every image tagged before
// still runs and saves, and the killed command succeeds when run again.
func TestKillNineAnywhereLeavesARepairableStore(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and races many kiln processes; not in -short")
	}
	s := newStore(t)
	images := map[string]string{} // tagged images and what their /id holds
	tagged := func(name, id string) { images[name] = id }
	recovered := func(t *testing.T, token string) {
		t.Helper()
		s.assertRecovered(token)
		s.assertImagesWork(images)
	}
	// point runs one crash point with s reporting to its subtest.
	point := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			s.t = t
			defer func() { s.t = nil }()
			fn(t)
		})
		s.t = t
	}
	big := randomData(1, 32<<20)
	tmp := t.TempDir()

	small := contextDir(t, "FROM busybox\nRUN echo small > /id\n", map[string][]byte{})
	s.mustKiln("build", "-t", "small:1", small)
	tagged("small:1", "small")

	// Thousands of small files keep the unpack busy long enough to be
	// caught in the middle, whatever the machine's load.
	bigFiles := map[string][]byte{"id": []byte("bigbase\n"), "zz-big.bin": big}
	for i := 0; i < 4000; i++ {
		bigFiles[fmt.Sprintf("many/%04d", i)] = []byte("x")
	}
	bigTar := filepath.Join(tmp, "bigbase.tar")
	rootfsTar(t, bigTar, bigFiles)
	s.mustKiln("import", bigTar, "bigbase:1")
	tagged("bigbase:1", "bigbase")

	point("unpack", func(t *testing.T) {
		dir := contextDir(t, "FROM bigbase:1\nRUN echo p1 > /id\n", map[string][]byte{})
		r := s.start("build", "-t", "p1:1", dir)
		killWhen(t, r, "while unpacking the base layer", func() bool { return s.inUncommittedSnapshot("many", 0) })
		recovered(t, "")
		s.mustKiln("build", "-t", "p1:1", dir)
		tagged("p1:1", "p1")
	})

	point("RUN", func(t *testing.T) {
		dir := contextDir(t, "FROM busybox\nARG S=0\nRUN touch /marker-run && sleep $S\nRUN echo p2 > /id\n", map[string][]byte{})
		r := s.start("build", "--build-arg", "S=613", "-t", "p2:1", dir)
		killWhen(t, r, "during a RUN", func() bool { return s.inUncommittedSnapshot("marker-run", 0) })
		// The container outlives kiln (runc is its parent) until the next
		// kiln command deletes it.
		for i := 0; i < 100 && len(liveProcesses("sleep 613")) == 0; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if len(liveProcesses("sleep 613")) == 0 {
			t.Errorf("no container process left to clean up: the test proves nothing")
		}
		recovered(t, "sleep 613")
		s.mustKiln("build", "-t", "p2:1", dir)
		tagged("p2:1", "p2")
	})

	point("layer commit", func(t *testing.T) {
		dir := contextDir(t, "FROM busybox\nRUN head -c 33554432 /dev/urandom > /big && mkdir /many && for i in $(seq 3000); do echo $i > /many/$i; done && echo p3 > /id\n", map[string][]byte{})
		r := s.start("build", "-t", "p3:1", dir)
		killWhen(t, r, "while committing a 32 MB layer", func() bool { return tempFileOver(s.blobsDir(), 4<<20) })
		recovered(t, "")
		s.mustKiln("build", "-t", "p3:1", dir)
		tagged("p3:1", "p3")
	})

	// Steps cached, only a new label: the first blob written is the config.
	exportDir := contextDir(t, "FROM busybox\nRUN echo p4 > /id\n", map[string][]byte{})
	s.mustKiln("build", "-t", "p4:1", exportDir)
	tagged("p4:1", "p4")
	point("export", func(t *testing.T) {
		created := onCreate(t, s.blobsDir(), ".tmp-")
		r := s.start("build", "--label", "n=2", "-t", "p4:2", exportDir)
		killOn(t, r, "while writing the image config", created)
		recovered(t, "")
		s.mustKiln("build", "--label", "n=2", "-t", "p4:2", exportDir)
		tagged("p4:2", "p4")
	})

	point("tag write", func(t *testing.T) {
		created := onCreate(t, filepath.Join(s.root, "content"), ".tmp-index.json")
		r := s.start("build", "--label", "n=3", "-t", "p4:3", exportDir)
		killOn(t, r, "while writing index.json", created)
		recovered(t, "")
		s.mustKiln("build", "--label", "n=3", "-t", "p4:3", exportDir)
		tagged("p4:3", "p4")
	})

	copyDir := contextDir(t, "FROM busybox\nCOPY big.bin /big.bin\nRUN echo p6 > /id\n", map[string][]byte{"big.bin": big})
	point("COPY", func(t *testing.T) {
		r := s.start("build", "-t", "p6:1", copyDir)
		killWhen(t, r, "while copying a 32 MB context file", func() bool { return s.inUncommittedSnapshot("big.bin", 1) })
		recovered(t, "")
		s.mustKiln("build", "-t", "p6:1", copyDir)
		tagged("p6:1", "p6")
	})

	// Images with layers this store does not have, for load and pull.
	other := newStore(t)
	for i, name := range []string{"loaded:1", "pulled:1"} {
		p := filepath.Join(tmp, "other.tar")
		rootfsTar(t, p, map[string][]byte{"id": []byte(strings.TrimSuffix(name, ":1") + "\n"), "zz-big.bin": randomData(byte(2+i), 16<<20)})
		other.mustKiln("import", p, name)
	}
	loadTar := filepath.Join(tmp, "load.tar")
	other.mustKiln("save", "-o", loadTar, "loaded:1")

	point("load", func(t *testing.T) {
		r := s.start("load", "-i", loadTar)
		killWhen(t, r, "while loading a 16 MB layer", func() bool { return tempFileOver(s.blobsDir(), 0) })
		recovered(t, "")
		if out, _, _ := s.kiln("images", "-q", "loaded"); out != "" {
			t.Errorf("a killed load left a tag: %s", out)
		}
		s.mustKiln("load", "-i", loadTar)
		tagged("loaded:1", "loaded")
	})

	point("save", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.tar")
		r := s.start("save", "-o", out, "bigbase:1")
		killWhen(t, r, "while saving", func() bool { return tempFileOver(filepath.Dir(out), 0) })
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a killed save left %s (%v)", out, err)
		}
		recovered(t, "")
		s.mustKiln("save", "-o", out, "bigbase:1")
	})

	point("pull", func(t *testing.T) {
		reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
		ref := reg.Ref("crash/pulled:1")
		ptPush(t, other, "pulled:1", ref)
		r := s.start("pull", ref)
		killWhen(t, r, "while pulling a 16 MB layer", func() bool { return tempFileOver(s.blobsDir(), 0) })
		recovered(t, "")
		if out, _, _ := s.kiln("images", "-q", ref); out != "" {
			t.Errorf("a killed pull left a tag: %s", out)
		}
		s.mustKiln("pull", ref)
		tagged(ref, "pulled")
	})

	point("run", func(t *testing.T) {
		r := s.start("run", "--rm", "small:1", "sh", "-c", "touch /marker-run2 && sleep 614")
		killWhen(t, r, "during kiln run", func() bool { return s.inUncommittedSnapshot("marker-run2", 0) })
		recovered(t, "sleep 614")
		if out := s.mustKiln("run", "--rm", "busybox", "/bin/echo", "ok"); out != "ok\n" {
			t.Errorf("kiln run busybox: %q", out)
		}
	})

	point("OCI export", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "oci.tar")
		r := s.start("build", "-o", "type=oci,dest="+out, "-t", "p6:1", copyDir)
		killWhen(t, r, "while compressing a 32 MB layer", func() bool { return tempFileOver(s.blobsDir(), 1<<20) })
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a killed export left %s (%v)", out, err)
		}
		recovered(t, "")
		s.mustKiln("build", "-o", "type=oci,dest="+out, "-t", "p6:1", copyDir)
		if _, err := os.Stat(out); err != nil {
			t.Error(err)
		}
	})
}
