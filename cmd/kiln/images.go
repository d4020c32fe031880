package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/cache/content"
	"github.com/spf13/cobra"
)

func imagesCmd() *cobra.Command {
	var quiet, digests bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			rows, err := listImages(store)
			if err != nil {
				return err
			}
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.id] {
						seen[r.id] = true
						fmt.Println(shortID(r.id))
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
			if digests {
				fmt.Fprintln(w, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
			} else {
				fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, r := range rows {
				if digests {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.repo, r.tag, r.digest, shortID(r.id), ago(r.created), humanSize(r.size))
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.repo, r.tag, shortID(r.id), ago(r.created), humanSize(r.size))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().BoolVar(&digests, "digests", false, "show the registry digest of pulled images")
	return cmd
}

type imageRow struct {
	repo, tag, id string
	created       time.Time
	size          int64
	image         *content.StoredImage
	name          string
	digest        string // registry digest of a pulled image, "<none>" otherwise
}

// listImages reads every index entry, newest first like docker.
func listImages(store *cache.Store) ([]imageRow, error) {
	imgs, err := store.Content.Images()
	if err != nil {
		return nil, err
	}
	var rows []imageRow
	for _, im := range imgs {
		si, err := store.Content.ReadImage(im.Descriptor)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Descriptor.Digest, err)
		}
		r := imageRow{repo: "<none>", tag: "<none>", id: string(si.ID()), image: si, name: im.Name, digest: "<none>"}
		if im.Name != "" {
			r.repo, r.tag = content.SplitName(im.Name)
			if r.tag == "" { // pulled by digest
				r.tag = "<none>"
			}
		}
		if rd := im.Descriptor.Annotations[content.AnnotationRepoDigest]; rd != "" {
			if _, d, ok := strings.Cut(rd, "@"); ok {
				r.digest = d
			}
		}
		if si.Config.Created != nil {
			r.created = *si.Config.Created
		}
		for _, l := range si.Manifest.Layers {
			r.size += l.Size
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].created.After(rows[j].created) })
	return rows, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ago formats a time like docker: "2 hours ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	switch {
	case d < time.Second:
		return "Less than a second ago"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	case d < 14*24*time.Hour:
		return plural(int(d.Hours()/24), "day") + " ago"
	case d < 60*24*time.Hour:
		return plural(int(d.Hours()/24/7), "week") + " ago"
	case d < 2*365*24*time.Hour:
		return plural(int(d.Hours()/24/30), "month") + " ago"
	}
	return plural(int(d.Hours()/24/365), "year") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "About an hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// humanSize formats bytes like docker (decimal units, 3 significant digits).
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}
