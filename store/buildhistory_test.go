package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// journal writes a build journal as package builder does: a record (unless
// running) and a log per entry of logs, finished at when.
func (f *fixture) journal(id string, when time.Time, running bool, logs ...int) string {
	f.t.Helper()
	dir := filepath.Join(f.s.BuildsDir(), id)
	must(f.t, os.MkdirAll(dir, 0o700))
	for i, n := range logs {
		must(f.t, os.WriteFile(filepath.Join(dir, "step-"+string(rune('1'+i))+".log"), []byte(strings.Repeat("x", n)), 0o600))
	}
	if !running {
		rec := filepath.Join(dir, BuildRecordFile)
		must(f.t, os.WriteFile(rec, []byte(`{"id":"`+id+`"}`), 0o600))
		must(f.t, os.Chtimes(rec, when, when))
	}
	return dir
}

func TestDiskUsageCountsBuildHistoryApartFromTheCache(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.journal("20260101T000000Z-aaaaaaaaaaaa", now.Add(-time.Hour), false, 1000, 2000)
	f.journal("20260101T000001Z-bbbbbbbbbbbb", now, false)
	f.journal("20260101T000002Z-cccccccccccc", now, true, 500)
	u := f.usage()
	if len(u.Builds) != 3 || u.ActiveBuilds != 1 {
		t.Fatalf("builds %+v, active %d; want 3 with 1 running", u.Builds, u.ActiveBuilds)
	}
	if u.Builds[0].ID != "20260101T000002Z-cccccccccccc" || !u.Builds[0].Running || u.Builds[2].LogsSize != 3000 {
		t.Errorf("builds: %+v", u.Builds)
	}
	if u.HistoryReclaimable != 3000 {
		t.Errorf("reclaimable %d, want the finished builds' logs, 3000", u.HistoryReclaimable)
	}
	var onDisk int64
	for _, b := range u.Builds {
		onDisk += duSB(t, filepath.Join(f.s.BuildsDir(), b.ID))
	}
	if u.HistorySize != onDisk {
		t.Errorf("history size %d, du -sb of the journals %d", u.HistorySize, onDisk)
	}
	if u.CacheSize != 0 || u.Unreferenced != 0 {
		t.Errorf("journals counted as build cache: %d (%d unreferenced)", u.CacheSize, u.Unreferenced)
	}
	if u.Budgeted < u.HistorySize {
		t.Errorf("budgeted %d leaves out the history %d", u.Budgeted, u.HistorySize)
	}
}

func TestPruneRemovesBuildLogsButKeepsTheirRecords(t *testing.T) {
	f := newFixture(t)
	old := f.journal("20260101T000000Z-aaaaaaaaaaaa", time.Now().Add(-time.Hour), false, 1000, 2000)
	f.exclusive()
	rep := f.collect(GCOptions{Records: true, BuildLogs: true, All: true})
	if exists(filepath.Join(old, "step-1.log")) || exists(filepath.Join(old, "step-2.log")) {
		t.Error("the logs are still there")
	}
	if !exists(filepath.Join(old, BuildRecordFile)) {
		t.Error("the build's record went too")
	}
	if len(rep.Builds) != 1 || rep.Builds[0].Record || rep.Builds[0].Size != 3000 || rep.Reclaimed < 3000 {
		t.Errorf("report: %+v, reclaimed %d", rep.Builds, rep.Reclaimed)
	}
}

func TestPruneAllRemovesWholeJournalsAndUntilSparesRecentOnes(t *testing.T) {
	f := newFixture(t)
	old := f.journal("20260101T000000Z-aaaaaaaaaaaa", time.Now().Add(-48*time.Hour), false, 1000)
	recent := f.journal("20260101T000001Z-bbbbbbbbbbbb", time.Now(), false, 1000)
	f.exclusive()
	rep := f.collect(GCOptions{Records: true, BuildLogs: true, BuildRecords: true, All: true, Until: 24 * time.Hour})
	if exists(old) {
		t.Error("the old journal is still there")
	}
	if !exists(filepath.Join(recent, "step-1.log")) || !exists(filepath.Join(recent, BuildRecordFile)) {
		t.Error("--filter until=24h removed a build of now")
	}
	if len(rep.Builds) != 1 || !rep.Builds[0].Record || rep.Builds[0].ID != filepath.Base(old) {
		t.Errorf("report: %+v", rep.Builds)
	}
}

func TestCollectRemovesWhatACrashedBuildLeft(t *testing.T) {
	f := newFixture(t)
	crashed := f.journal("20260101T000000Z-aaaaaaaaaaaa", time.Time{}, true, 1000)
	f.exclusive()
	f.collect(GCOptions{Records: true, All: true})
	if exists(crashed) {
		t.Error("a journal without a record, under the exclusive lock, is a crashed build's: it should go")
	}
}

func TestCollectOverBudgetRemovesOldestBuildLogsFirstAndSparesTheNewest(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	oldest := f.journal("20260101T000000Z-aaaaaaaaaaaa", now.Add(-3*time.Hour), false, 4000)
	middle := f.journal("20260101T000001Z-bbbbbbbbbbbb", now.Add(-2*time.Hour), false, 4000)
	newest := f.journal("20260101T000002Z-cccccccccccc", now.Add(-time.Hour), false, 20000)
	f.exclusive()
	// room for the records and one old log, not for two: the newest build
	// is over the budget alone, and is spared anyway
	rep, err := f.s.CollectOverBudget(t.Context(), 20000+4000+3*4096+2000)
	must(t, err)
	if exists(filepath.Join(oldest, "step-1.log")) {
		t.Error("the oldest build's log is still there")
	}
	if !exists(filepath.Join(middle, "step-1.log")) {
		t.Error("the middle build's log went: the oldest should have been enough")
	}
	if !exists(filepath.Join(newest, "step-1.log")) || !exists(filepath.Join(newest, BuildRecordFile)) {
		t.Error("the newest build's journal was touched")
	}
	if !exists(filepath.Join(oldest, BuildRecordFile)) {
		t.Error("the oldest build's record went though the logs made room")
	}
	if len(rep.Builds) != 1 || rep.Builds[0].ID != filepath.Base(oldest) {
		t.Errorf("report: %+v", rep.Builds)
	}
}

func TestCheckReportsCrashedAndDamagedJournalsAndRepairRemovesThem(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	ok := f.journal("20260101T000000Z-aaaaaaaaaaaa", now, false)
	crashed := f.journal("20260101T000001Z-bbbbbbbbbbbb", now, true, 500)
	damaged := f.journal("20260101T000002Z-cccccccccccc", now, false)
	must(t, os.WriteFile(filepath.Join(damaged, BuildRecordFile), []byte(`{"id":"x","steps":[{"na`), 0o600))
	notUTF8 := f.journal("20260101T000003Z-dddddddddddd", now, false)
	must(t, os.WriteFile(filepath.Join(notUTF8, BuildRecordFile), []byte("{\"id\":\"\xff\"}"), 0o600))

	r := check(t, f.s, CheckOptions{})
	if r.Consistent() {
		t.Errorf("a store with damaged journals is consistent:\n%s", findings(r))
	}
	assertFinding(t, r, Stale, "build", "builds/20260101T000001Z-bbbbbbbbbbbb", "never finished")
	assertFinding(t, r, Problem, "build", "builds/20260101T000002Z-cccccccccccc", "damaged record")
	assertFinding(t, r, Problem, "build", "builds/20260101T000003Z-dddddddddddd", "damaged record", "UTF-8")

	r = check(t, f.s, CheckOptions{Repair: true})
	if !r.Consistent() {
		t.Errorf("not consistent after repair:\n%s", findings(r))
	}
	for _, dir := range []string{crashed, damaged, notUTF8} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s not removed by repair", dir)
		}
	}
	if _, err := os.Stat(ok); err != nil {
		t.Errorf("a sound journal removed: %v", err)
	}
}
