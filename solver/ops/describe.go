package ops

import (
	"encoding/json"
	"strings"

	"github.com/kiln-build/kiln/cache/record"
)

// Describe turns the key components of a step (as its op's CacheKey made
// them, e.g. from a cache record) into the instruction it ran, on one line:
// "RUN apt-get update", "COPY a b /dst", "WORKDIR /x". A shell form's
// "/bin/sh -c" is left out. An op it does not know is shown by its kind.
func Describe(comps []record.Component) string {
	get := func(name string) string {
		for _, c := range comps {
			if c.Name == name {
				return c.Value
			}
		}
		return ""
	}
	list := func(name string) string {
		var vs []string
		if json.Unmarshal([]byte(get(name)), &vs) != nil {
			return get(name)
		}
		return strings.Join(vs, " ")
	}
	var s string
	switch op := get("op"); op {
	case "exec":
		var args []string
		json.Unmarshal([]byte(get("args")), &args)
		if len(args) >= 3 && args[1] == "-c" && strings.HasSuffix(args[0], "sh") {
			args = args[2:]
		}
		s = "RUN " + strings.Join(args, " ")
	case "copy", "add":
		s = strings.ToUpper(op) + " " + list("sources") + " " + get("dest")
	case "mkdir":
		s = "WORKDIR " + get("path")
	case "mkfile":
		var files []string
		for _, c := range comps {
			if f, ok := strings.CutPrefix(c.Name, "file:"); ok {
				files = append(files, f)
			}
		}
		s = "COPY <<EOF " + strings.Join(files, " ")
	case "download":
		s = "ADD " + get("url") + " " + get("dest")
	default:
		s = op
	}
	return strings.Join(strings.Fields(s), " ")
}

// CacheMountIDs lists the ids of the cache mounts (RUN --mount=type=cache)
// in a step's key components, in mount order; none for a step that is not
// a RUN or mounts no cache.
func CacheMountIDs(comps []record.Component) []string {
	var ids []string
	for _, c := range comps {
		if c.Name != "mounts" {
			continue
		}
		var ms []Mount
		if json.Unmarshal([]byte(c.Value), &ms) != nil {
			continue
		}
		for _, m := range ms {
			if m.Type == "cache" && m.CacheID != "" {
				ids = append(ids, m.CacheID)
			}
		}
	}
	return ids
}
