package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func historyCmd() *cobra.Command {
	var noTrunc bool
	cmd := &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show the history of an image, newest layer first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			si, err := findImage(store, args[0])
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT")
			layer := len(si.Manifest.Layers) - 1
			hist := si.Config.History
			for i := len(hist) - 1; i >= 0; i-- {
				h := hist[i]
				size := int64(0)
				if !h.EmptyLayer && layer >= 0 {
					size = si.Manifest.Layers[layer].Size
					layer--
				}
				id := "<missing>"
				if i == len(hist)-1 {
					id = shortID(string(si.ID()))
				}
				created := "N/A"
				if h.Created != nil {
					created = ago(*h.Created)
				}
				by := strings.ReplaceAll(h.CreatedBy, "\t", " ")
				if !noTrunc && len(by) > 45 {
					by = by[:44] + "…"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", id, created, by, humanSize(size), h.Comment)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	return cmd
}
