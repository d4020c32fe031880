// The calls that work on a whole store rather than its content alone:
// load with rollback, import under a name.

package archive

import (
	"context"
	"io"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
)

// LoadInto is Load into a whole store, which it leaves as it found it but
// for the images loaded: Load stores every file of the archive as it
// streams by, and what no image uses afterwards (all of it, for a broken
// archive) goes again. That clean-up is store.Store.RemoveUnreferencedBlobs,
// which does nothing while other kiln processes use the store; prune and
// GC collect the blobs then.
func LoadInto(ctx context.Context, r io.Reader, st *store.Store) ([]Loaded, error) {
	before, err := st.Content.Blobs()
	if err != nil {
		return nil, err
	}
	loaded, err := Load(ctx, r, st.Content)
	removeNewBlobs(st, before)
	return loaded, err
}

// removeNewBlobs removes the blobs that are in the store now but were not
// in before, unless something refers to them.
func removeNewBlobs(st *store.Store, before []digest.Digest) {
	after, err := st.Content.Blobs()
	if err != nil {
		return
	}
	had := make(map[digest.Digest]bool, len(before))
	for _, d := range before {
		had[d] = true
	}
	var added []digest.Digest
	for _, d := range after {
		if !had[d] {
			added = append(added, d)
		}
	}
	st.RemoveUnreferencedBlobs(added)
}

// ImportInto is `kiln import`: Import of the rootfs tar r into st's
// content, then the image tagged name (untagged when name is ""), read
// back as stored.
func ImportInto(ctx context.Context, r io.Reader, st *store.Store, name string, opts ImportOptions) (*content.StoredImage, error) {
	desc, err := Import(ctx, r, st.Content, opts)
	if err != nil {
		return nil, err
	}
	return st.AddImage(desc, name)
}
