package container

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/store"
	digest "github.com/opencontainers/go-digest"
)

// Listed is one container of a listing with its state as it really is.
type Listed struct {
	*store.Container
	State store.ContainerState
}

// ListOptions are docker ps's: All includes stopped containers, Last
// keeps only the N newest (of every state), Filters are KEY=VALUE terms.
type ListOptions struct {
	All     bool
	Last    int
	Filters []string
}

// Filter keys of docker ps that kiln knows; the values of one key are
// alternatives, different keys must all match.
var listFilterKeys = []string{"ancestor", "before", "exited", "id", "label", "name", "network", "since", "status"}

// Docker's container states (a status filter must name one of them).
var validStatuses = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

// List is docker ps: newest first.
func (m *Manager) List(o ListOptions) ([]Listed, error) {
	f, err := m.parseFilters(o.Filters)
	if err != nil {
		return nil, err
	}
	all := o.All || o.Last > 0 || f.has("status") || f.has("exited")
	cs, err := m.Store.Containers()
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, c := range cs {
		st, err := m.State(c)
		if err != nil {
			continue // removed meanwhile
		}
		l := Listed{Container: c, State: st}
		if !all && st.Status != store.StatusRunning {
			continue
		}
		if !f.match(l) {
			continue
		}
		out = append(out, l)
		if o.Last > 0 && len(out) == o.Last {
			break
		}
	}
	return out, nil
}

// listFilter holds the parsed terms by key, and what before, since and
// ancestor name, resolved.
type listFilter struct {
	terms         map[string][]string
	before, since []time.Time
	ancestors     []ancestor
}

// ancestor is an image of an ancestor= term: a container made from it, or
// from an image built on it (its layers first), matches.
type ancestor struct {
	ref    string
	id     digest.Digest
	layers []digest.Digest
}

func (m *Manager) parseFilters(terms []string) (*listFilter, error) {
	f := &listFilter{terms: map[string][]string{}}
	for _, t := range terms {
		k, v, ok := strings.Cut(t, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		}
		if !slices.Contains(listFilterKeys, k) {
			return nil, fmt.Errorf("Invalid filter '%s'", k)
		}
		switch k {
		case "status":
			if !slices.Contains(validStatuses, v) {
				return nil, fmt.Errorf("Invalid filter 'status=%s'", v)
			}
		case "exited":
			if _, err := strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("Invalid filter 'exited=%s'", v)
			}
		case "before", "since":
			c, err := m.Store.LookupContainer(v)
			if err != nil {
				return nil, err
			}
			if k == "before" {
				f.before = append(f.before, c.Created)
			} else {
				f.since = append(f.since, c.Created)
			}
		case "ancestor":
			// An image that does not exist matches nothing but the
			// name itself (docker only warns).
			a := ancestor{ref: v}
			if si, err := m.Store.LookupImage(v); err == nil {
				a.id, a.layers = si.ID(), si.Config.RootFS.DiffIDs
			}
			f.ancestors = append(f.ancestors, a)
		}
		f.terms[k] = append(f.terms[k], v)
	}
	return f, nil
}

// has reports whether key was given.
func (f *listFilter) has(key string) bool { return len(f.terms[key]) > 0 }

// match reports whether l passes every key of f.
func (f *listFilter) match(l Listed) bool {
	anyOf := func(key string, ok func(v string) bool) bool {
		return !f.has(key) || slices.ContainsFunc(f.terms[key], ok)
	}
	regex := func(pattern, s string) bool {
		ok, err := regexp.MatchString(pattern, s)
		return err == nil && ok
	}
	return anyOf("status", func(v string) bool { return v == l.State.Status }) &&
		anyOf("exited", func(v string) bool {
			n, _ := strconv.Atoi(v)
			return l.State.Status == store.StatusExited && l.State.ExitCode == n
		}) &&
		anyOf("id", func(v string) bool { return regex(v, l.ID) }) &&
		anyOf("name", func(v string) bool { return regex(v, "/"+l.Name) }) &&
		anyOf("network", func(v string) bool { return v == l.Network }) &&
		f.labels(l) &&
		(!f.has("before") || slices.ContainsFunc(f.before, l.Created.Before)) &&
		(!f.has("since") || slices.ContainsFunc(f.since, l.Created.After)) &&
		(!f.has("ancestor") || slices.ContainsFunc(f.ancestors, func(a ancestor) bool { return a.of(l.Container) }))
}

// labels: every label= term must match (KEY, or KEY=VALUE).
func (f *listFilter) labels(l Listed) bool {
	for _, t := range f.terms["label"] {
		k, v, hasValue := strings.Cut(t, "=")
		got, ok := l.Labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

// of reports whether c was made from a's image or one built on it.
func (a ancestor) of(c *store.Container) bool {
	if c.Image == a.ref || a.id != "" && c.ImageID == a.id {
		return true
	}
	if a.id == "" || len(a.layers) == 0 || len(c.Layers) < len(a.layers) {
		return false
	}
	for i, d := range a.layers {
		if c.Layers[i].DiffID != d {
			return false
		}
	}
	return true
}
