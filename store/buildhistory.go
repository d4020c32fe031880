package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unicode/utf8"
)

// Build history in the reference walk. Each <root>/builds/<id>/ directory
// is one build's journal (package builder writes it): BuildRecordFile,
// written once when the build ends, and its steps' logs. Two holders keep
// a finished journal:
//
//	build record (holdBuildRecord) → the directory with BuildRecordFile,
//	                                   and the trees its keys name (trees.go)
//	build logs   (holdBuildLogs)   → every log file, and the directory
//
// so that a collection may take the logs alone (kiln prune: kiln builds
// and kiln explain keep working) or the whole journal (kiln prune -a, the
// budget), and the directory goes only when both holders do. A directory
// without BuildRecordFile is a build still running; when the store is
// held exclusively no build runs, so it was left by one that crashed and
// is junk.

// BuildRecordFile is the file that makes a journal directory a finished
// build's record.
const BuildRecordFile = "build.json"

// ErrDamagedRecord means a journal's BuildRecordFile is there but cannot
// be read as one: truncated, not JSON, not UTF-8.
var ErrDamagedRecord = errors.New("damaged record")

// ReadBuildRecord decodes the BuildRecordFile of the journal directory dir
// into v, which names the fields its caller needs (package builder reads
// the whole journal, the collection only the steps' key components). A
// file that is not valid UTF-8 JSON is ErrDamagedRecord; a missing one is
// fs.ErrNotExist (a build still running, or one that crashed).
func ReadBuildRecord(dir string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, BuildRecordFile))
	if err != nil {
		return err
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w (not UTF-8)", ErrDamagedRecord)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w (%v)", ErrDamagedRecord, err)
	}
	return nil
}

// BuildUsage is one build's journal on disk.
type BuildUsage struct {
	ID string
	// Finished is when the build's record was written; zero while Running.
	Finished time.Time
	Running  bool
	// Size is all the journal takes, LogsSize the part its step logs take.
	Size, LogsSize int64
}

// PrunedBuild is a build whose history a collection removed: its logs,
// and with Record its record too (the whole journal).
type PrunedBuild struct {
	ID     string
	Record bool
	Size   int64
}

func (s *Store) scanBuilds(g *graph) error {
	dir := s.BuildsDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			n, _ := du(p)
			g.add(&object{kind: objJunk, path: p, size: n, rank: 2})
			continue
		}
		rec, err := os.Lstat(filepath.Join(p, BuildRecordFile))
		if err != nil {
			n, _ := du(p)
			o := g.add(&object{kind: objBuildLog, path: p, size: n, rank: 2})
			if s.exclusive {
				o.kind = objJunk
				continue
			}
			h := &holder{kind: holdBuildRunning, build: e.Name()}
			h.hold(o)
			g.holders = append(g.holders, h)
			continue
		}
		var dirSize int64
		if fi, err := e.Info(); err == nil {
			dirSize = fi.Size()
		}
		recObj := g.add(&object{kind: objBuildRecord, path: p, size: dirSize + rec.Size(), rank: 0})
		recH := &holder{kind: holdBuildRecord, build: e.Name(), lastUsed: rec.ModTime()}
		logsH := &holder{kind: holdBuildLogs, build: e.Name(), lastUsed: rec.ModTime()}
		recH.hold(recObj)
		logsH.hold(recObj)
		files, _ := os.ReadDir(p)
		for _, f := range files {
			if f.Name() == BuildRecordFile {
				continue
			}
			n, err := du(filepath.Join(p, f.Name()))
			if err != nil {
				continue // gone meanwhile
			}
			logsH.hold(g.add(&object{kind: objBuildLog, path: filepath.Join(p, f.Name()), size: n, rank: 1}))
		}
		g.holders = append(g.holders, recH, logsH)
		if g.newestBuild == nil || rec.ModTime().After(g.newestBuild.lastUsed) {
			g.newestBuild = recH
		}
	}
	return nil
}

// historyEligible says whether a collection with opts may remove what a
// build history holder keeps.
func (g *graph) historyEligible(h *holder, opts GCOptions) bool {
	if h.kind == holdBuildRunning {
		return false
	}
	if h.kind == holdBuildLogs {
		return opts.BuildLogs
	}
	return opts.BuildRecords
}

// sparedBuild says whether h keeps the newest build's journal, which
// opts.SpareNewestBuild spares (it is measured all the same).
func (g *graph) sparedBuild(h *holder, opts GCOptions) bool {
	return opts.SpareNewestBuild && h.build != "" && g.newestBuild != nil && h.build == g.newestBuild.build
}

// evictClass orders candidates before their age: build records (a few
// kilobytes, what kiln explain compares with) go after everything but
// cache mounts, which are the last resort.
func evictClass(h *holder) int {
	switch h.kind {
	case holdMount:
		return 2
	case holdBuildRecord:
		return 1
	}
	return 0
}

// prunedBuilds says which builds' history the evicted holders' freed
// objects were, newest first.
func prunedBuilds(evicted []*holder, free []*object) []PrunedBuild {
	freed := map[*object]bool{}
	for _, o := range free {
		freed[o] = true
	}
	byID := map[string]*PrunedBuild{}
	var out []*PrunedBuild
	for _, h := range evicted {
		if h.kind != holdBuildLogs && h.kind != holdBuildRecord {
			continue
		}
		pb := byID[h.build]
		if pb == nil {
			pb = &PrunedBuild{ID: h.build}
			byID[h.build] = pb
			out = append(out, pb)
		}
		for _, o := range h.objs {
			if freed[o] {
				pb.Record = pb.Record || o.kind == objBuildRecord
				pb.Size += o.size
				freed[o] = false // once, though both holders hold the directory
			}
		}
	}
	var res []PrunedBuild
	for _, pb := range out {
		if pb.Size > 0 {
			res = append(res, *pb)
		}
	}
	sort.Slice(res, func(i, j int) bool { return res[i].ID > res[j].ID })
	return res
}

// historyUsage fills in u's build history: every journal, what they take
// and what kiln prune (which removes finished builds' logs) reclaims.
func (g *graph) historyUsage(u *Usage) {
	byID := map[string]*BuildUsage{}
	var builds []*BuildUsage
	for _, h := range g.holders {
		if h.kind != holdBuildLogs && h.kind != holdBuildRecord && h.kind != holdBuildRunning {
			continue
		}
		b := byID[h.build]
		if b == nil {
			b = &BuildUsage{ID: h.build, Running: h.kind == holdBuildRunning}
			byID[h.build] = b
			builds = append(builds, b)
		}
		if h.kind == holdBuildRunning {
			u.ActiveBuilds++
		} else {
			b.Finished = h.lastUsed
		}
		for _, o := range h.objs {
			if o.kind == objTree {
				continue // usage counts them, once though builds share them
			}
			if o.kind == objBuildLog {
				b.Size += o.size
				if h.kind == holdBuildLogs {
					b.LogsSize += o.size
					u.HistoryReclaimable += o.size
				}
			} else if h.kind == holdBuildRecord {
				b.Size += o.size
			}
			if h.kind != holdBuildLogs || o.kind == objBuildLog {
				u.HistorySize += o.size
			}
		}
	}
	for _, b := range builds {
		u.Builds = append(u.Builds, *b)
	}
	sort.SliceStable(u.Builds, func(i, j int) bool { return u.Builds[i].ID > u.Builds[j].ID })
}
