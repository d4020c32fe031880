package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/solver"
)

// Reading the build history: what `kiln builds` and `kiln logs` show of
// the journals that Run leaves in the store.

// Counts counts j's steps by state. A step that had started when the
// build was interrupted counts as ran.
func (j *Journal) Counts() solver.Counts {
	var c solver.Counts
	for _, s := range j.Steps {
		c.Add(s.State)
	}
	return c
}

// ErrNoSuchStep means a build has no step that a reference names.
var ErrNoSuchStep = errors.New("no such step")

// FindStep finds one step of j: ref is its number as the progress shows
// it ("3" or "#3"), or a substring of its name that only one step has
// (a name that is exactly ref wins over those that only contain it). An
// empty ref names no step.
func (j *Journal) FindStep(ref string) (*StepRecord, error) {
	if ref == "" {
		return nil, fmt.Errorf("build %s: an empty step name names no step: %w", j.ID, ErrNoSuchStep)
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(ref, "#")); err == nil {
		for _, s := range j.Steps {
			if s.Num == n {
				return s, nil
			}
		}
		return nil, fmt.Errorf("build %s has no step #%d: %w", j.ID, n, ErrNoSuchStep)
	}
	var found []*StepRecord
	for _, s := range j.Steps {
		if s.Name == ref {
			return s, nil
		}
		if strings.Contains(s.Name, ref) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("build %s has no step named like %q: %w", j.ID, ref, ErrNoSuchStep)
	case 1:
		return found[0], nil
	}
	var nums []string
	for _, s := range found {
		nums = append(nums, fmt.Sprintf("#%d %s", s.Num, s.Name))
	}
	return nil, fmt.Errorf("step %q is ambiguous in build %s: %s (name it by number)", ref, j.ID, strings.Join(nums, ", "))
}

// LogSize is the size of s's log in the store, or -1 if it wrote none or
// its log was removed (kiln prune removes build logs).
func LogSize(buildsDir string, j *Journal, s *StepRecord) int64 {
	if s.Log == "" {
		return -1
	}
	fi, err := os.Stat(filepath.Join(buildsDir, j.ID, s.Log))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// CopyLog streams s's whole log from the store to w, as the step wrote it
// (nothing clipped, nothing held in memory). A step that wrote nothing
// copies nothing.
func CopyLog(w io.Writer, buildsDir string, j *Journal, s *StepRecord) error {
	if s.Log == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(buildsDir, j.ID, s.Log))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("build %s step #%d: its log was removed (kiln prune removes build logs, keeping the build's record)", j.ID, s.Num)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// CopyLogs streams every log of j in step order, each after a header line
// "#N NAME" like the progress's; steps that wrote nothing are left out. A
// log kiln prune removed is said so in its place.
func CopyLogs(w io.Writer, buildsDir string, j *Journal) error {
	for _, s := range j.Steps {
		size := LogSize(buildsDir, j, s)
		if s.Log == "" || size == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "#%d %s\n", s.Num, s.Name); err != nil {
			return err
		}
		if size < 0 {
			if _, err := fmt.Fprintln(w, "(log removed by kiln prune)"); err != nil {
				return err
			}
			continue
		}
		if err := CopyLog(w, buildsDir, j, s); err != nil {
			return err
		}
	}
	return nil
}

// ShortID is the random part of a build ID (12 hex digits), what listings
// show, as docker shows 12 digits of an image ID; FindJournal takes it.
func (j *Journal) ShortID() string {
	if _, suffix, ok := strings.Cut(j.ID, "-"); ok {
		return suffix
	}
	return j.ID
}

// Outcome is j.Status, also for journals written before Status was: a
// build with an error failed.
func (j *Journal) Outcome() string {
	switch {
	case j.Status != "":
		return j.Status
	case j.Error != "":
		return StatusError
	}
	return StatusCompleted
}

// DockerfileName is the Dockerfile as the user would name it: relative to
// the context when it is inside it.
func (j *Journal) DockerfileName() string {
	if filepath.IsAbs(j.Dockerfile) && filepath.IsAbs(j.Context) {
		if rel, err := filepath.Rel(j.Context, j.Dockerfile); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return j.Dockerfile
}
