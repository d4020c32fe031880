// Package explain says why a build step ran instead of hitting the cache:
// it compares the step's cache key components with those of the closest
// earlier key of the same step (as the store's build journals and cache
// records keep them) and names what changed — a file with its old and new
// digests, a build arg or ENV with its old and new value (a secret's value
// never), the base image, the instruction or one of its flags — or says
// that there was no earlier build of the step, that its cache record was
// pruned, or that --no-cache asked for a run.
package explain

// Kind is what kind of change made a step run.
type Kind string

const (
	KindFile        Kind = "file"        // a source file's content changed (or it was added or removed)
	KindMode        Kind = "mode"        // only a source file's mode bits changed
	KindOwner       Kind = "owner"       // only a source file's owner changed
	KindVar         Kind = "var"         // an ARG, ENV or --build-arg value changed
	KindBase        Kind = "base"        // the base image resolved to another manifest
	KindInstruction Kind = "instruction" // the instruction text changed
	KindFlag        Kind = "flag"        // one of the instruction's flags or settings changed
	KindInput       Kind = "input"       // a step it depends on changed
	KindNoCache     Kind = "no-cache"    // --no-cache or --no-cache-filter
	KindNew         Kind = "new"         // no earlier build of this step
	KindPruned      Kind = "pruned"      // the same key was built before, its cache record is gone
	KindSameKey     Kind = "same-key"    // builds diff: the key did not change, only what the cache held
	KindFailed      Kind = "failed"      // the same key ran before and failed: nothing was cached
)

// Change is one reason a step ran.
type Change struct {
	Kind Kind `json:"kind"`
	// Name is what changed: a file path, a variable or flag name, an image
	// reference, the input's step name.
	Name string `json:"name,omitempty"`
	// Old and New are the values before and after (digests for files and
	// images). Both are empty for a secret: Redacted says so.
	Old      string `json:"old,omitempty"`
	New      string `json:"new,omitempty"`
	Redacted bool   `json:"redacted,omitempty"`
	// Text is the change as one line for a person.
	Text string `json:"text"`
}

func (c Change) String() string { return c.Text }
