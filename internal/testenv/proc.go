package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procID names a process robustly against pid reuse: pid plus start time.
type procID struct {
	pid   int
	start uint64
}

func (p procID) String() string { return strconv.Itoa(p.pid) }

// alive reports whether p is still running (a zombie counts as gone) and is
// still the same process.
func (p procID) alive() bool {
	st, ok := readStat(p.pid)
	return ok && st.start == p.start && st.state != 'Z' && st.state != 'X'
}

type procStat struct {
	ppid  int
	start uint64
	state byte
}

// readStat parses /proc/PID/stat.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// comm may contain spaces and parentheses: fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0]=state f[1]=ppid ... f[19]=starttime (field 22 overall)
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{ppid: ppid, start: start, state: f[0][0]}, true
}

// pidAlive reports whether a process with this pid exists and is not a zombie.
func pidAlive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}

// cmdlineMentions reports whether any argument of pid's command line names a
// path at or below one of roots.
func cmdlineMentions(pid int, roots []string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return false
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		for _, r := range roots {
			s := arg
			for {
				i := strings.Index(s, r)
				if i < 0 {
					break
				}
				rest := s[i+len(r):]
				if rest == "" || rest[0] == '/' || rest[0] == '"' || rest[0] == '\'' {
					return true
				}
				s = rest
			}
		}
	}
	return false
}

// relatedProcs returns the live processes that are seeds, or whose command
// line names a path below one of roots, plus all their descendants. The
// calling process is never included.
func relatedProcs(seeds []int, roots []string) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	stats := map[int]procStat{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.state == 'Z' || st.state == 'X' {
			continue
		}
		stats[pid] = st
		children[st.ppid] = append(children[st.ppid], pid)
	}
	picked := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if picked[pid] || pid == self || pid <= 1 {
			return
		}
		if _, ok := stats[pid]; !ok {
			return
		}
		picked[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, s := range seeds {
		walk(s)
	}
	if len(roots) > 0 {
		for pid := range stats {
			if !picked[pid] && cmdlineMentions(pid, roots) {
				walk(pid)
			}
		}
	}
	out := make([]procID, 0, len(picked))
	for pid := range picked {
		out = append(out, procID{pid, stats[pid].start})
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder returns the mount points at or below any of roots, in
// /proc/self/mountinfo order (parents before the mounts on top of them).
func mountsUnder(roots ...string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		for _, r := range roots {
			if r == "" {
				continue
			}
			r = filepath.Clean(r)
			if mp == r || strings.HasPrefix(mp, r+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	return out, nil
}

// unmountUnder unmounts everything at or below roots, last mounted first,
// falling back to a lazy unmount; it fails if mounts remain.
func unmountUnder(roots ...string) error {
	for round := 0; round < 5; round++ {
		mps, err := mountsUnder(roots...)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for i := len(mps) - 1; i >= 0; i-- {
			if err := unix.Unmount(mps[i], 0); err != nil {
				_ = unix.Unmount(mps[i], unix.MNT_DETACH)
			}
		}
	}
	mps, err := mountsUnder(roots...)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("mounts left under %v: %v", roots, mps)
	}
	return nil
}
