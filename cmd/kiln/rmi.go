package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi [OPTIONS] IMAGE [IMAGE...]",
		Aliases: []string{"image-rm"},
		Short:   "Remove images (by name: untag; by ID: delete)",
		Long: `Remove images like docker rmi. A name is untagged, and the image is
deleted when that was its last name. An ID (or any unambiguous prefix of
one) deletes the image with all its names, but only with -f when several
names refer to it. Layers and cache stay until prune or GC collects them.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var failed []string
			for _, ref := range args {
				lines, err := removeImage(st, ref, force)
				for _, l := range lines {
					fmt.Println(l)
				}
				if err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				return errors.New(strings.Join(failed, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image ID even if several names refer to it")
	return cmd
}

// removeImage follows docker's ImageDelete. The decision is taken and
// applied in one update of index.json, so a concurrent build tagging the
// same image never loses its tag to a stale view. It returns the lines to
// print ("Untagged: app:1", "Deleted: sha256:…").
func removeImage(st *store.Store, ref string, force bool) ([]string, error) {
	imgs, err := loadImages(st, nil)
	if err != nil {
		return nil, err
	}
	target, err := lookupImage(imgs, ref)
	if err != nil {
		return nil, err
	}
	byName := ""
	if name, err := content.NormalizeName(ref); err == nil && !isIDPrefix(target.ID, ref) {
		for _, n := range target.Names {
			if n == name {
				byName = name
			}
		}
	}
	configs := map[digest.Digest]digest.Digest{} // manifest → image ID
	for _, im := range imgs {
		for _, m := range im.Manifests {
			configs[m] = im.ID
		}
	}
	configOf := func(m digest.Digest) digest.Digest {
		if id, ok := configs[m]; ok {
			return id
		}
		var mf ocispec.Manifest
		if b, err := st.Content.ReadBlob(m); err == nil && json.Unmarshal(b, &mf) == nil {
			configs[m] = mf.Config.Digest
		}
		return configs[m]
	}

	var lines []string
	err = st.Content.UpdateIndex(func(idx *ocispec.Index) error {
		lines = nil
		id := target.ID
		var keep []ocispec.Descriptor
		var names []string // of the image, in the index now
		for _, m := range idx.Manifests {
			if n := m.Annotations[content.AnnotationImageName]; n != "" && configOf(m.Digest) == id {
				names = append(names, n)
			}
		}
		if byName != "" {
			found := false
			for _, m := range idx.Manifests {
				if m.Annotations[content.AnnotationImageName] == byName {
					found = true
					continue
				}
				keep = append(keep, m)
			}
			if !found {
				return fmt.Errorf("no such image: %s", ref)
			}
			lines = append(lines, "Untagged: "+content.FamiliarName(byName))
			names = without(names, byName)
			// As docker: once no tag of that repository is left, the
			// repository's digest references go too.
			if repo, tagged := repoOf(byName); tagged {
				if !hasTagIn(names, repo) {
					for _, n := range names {
						if r, t := repoOf(n); r == repo && !t {
							keep = removeName(keep, n)
							names = without(names, n)
							lines = append(lines, "Untagged: "+content.FamiliarName(n))
						}
					}
				}
			}
			if len(names) > 0 {
				idx.Manifests = keep
				return nil
			}
		} else {
			if !force && !singleReference(names) {
				var fam []string
				for _, n := range names {
					fam = append(fam, content.FamiliarName(n))
				}
				return fmt.Errorf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories: %s",
					shortID(string(id)), strings.Join(fam, ", "))
			}
			for _, n := range names {
				lines = append(lines, "Untagged: "+content.FamiliarName(n))
			}
			keep = idx.Manifests
		}
		// No name left: the image goes, with every entry of its ID.
		out := keep[:0:0]
		for _, m := range keep {
			if configOf(m.Digest) != id {
				out = append(out, m)
			}
		}
		idx.Manifests = out
		lines = append(lines, "Deleted: "+string(id))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// isIDPrefix is docker's isImageIDPrefix: ref names the image by its ID.
func isIDPrefix(id digest.Digest, ref string) bool {
	return hexPrefix.MatchString(ref) && strings.HasPrefix(string(id), "sha256:"+strings.TrimPrefix(ref, "sha256:"))
}

// repoOf returns the repository of a full name and whether it is a tag
// (rather than a NAME@DIGEST reference).
func repoOf(name string) (string, bool) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name, false
	}
	_, tagged := ref.(reference.NamedTagged)
	return ref.Name(), tagged
}

func hasTagIn(names []string, repo string) bool {
	for _, n := range names {
		if r, t := repoOf(n); t && r == repo {
			return true
		}
	}
	return false
}

// singleReference is docker's isSingleReference: at most one tag, and
// digest references only of that tag's repository.
func singleReference(names []string) bool {
	tagRepo, tags := "", 0
	repos := map[string]bool{}
	for _, n := range names {
		r, t := repoOf(n)
		if t {
			tags++
			tagRepo = r
		} else {
			repos[r] = true
		}
	}
	if tags > 1 {
		return false
	}
	if tags == 1 {
		return len(repos) == 0 || len(repos) == 1 && repos[tagRepo]
	}
	return len(repos) <= 1
}

func without(names []string, n string) []string {
	out := names[:0:0]
	for _, x := range names {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func removeName(ms []ocispec.Descriptor, name string) []ocispec.Descriptor {
	out := ms[:0:0]
	for _, m := range ms {
		if m.Annotations[content.AnnotationImageName] != name {
			out = append(out, m)
		}
	}
	return out
}
