package main

import (
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/cells"
	"github.com/spf13/cobra"
)

// docker's history formats (docker/cli cli/command/image/formatter_history.go).
const (
	historyTableFormat         = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	historyNonHumanTableFormat = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
)

var historyHeaders = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
	"CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
}

func historyCmd() *cobra.Command {
	var noTrunc, quiet, human bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image, newest layer first",
		Long: `Show the history of an image like docker history: one row per step,
newest first. Only the newest row has an image ID; the others are
<missing>, as in docker for pulled or loaded images.

--format takes a Go template over .ID .CreatedSince .CreatedAt .CreatedBy
.Size .Comment, "table TEMPLATE" for columns with headers, or "json" for
one JSON object per line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			si, entries, err := st.History(args[0])
			if err != nil {
				return err
			}
			rows := make([]*historyRow, len(entries))
			for i, h := range entries {
				r := &historyRow{id: "<missing>", createdBy: h.CreatedBy, comment: h.Comment, size: h.Size, trunc: !noTrunc, human: human}
				if i == 0 {
					r.id = string(si.ID())
				}
				if h.Created != nil {
					r.created = h.Created.Unix()
				}
				rows[i] = r
			}
			return writeHistory(os.Stdout, historyFormat(format, quiet, human), rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&human, "human", "H", true, "print sizes and dates in human readable format")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.StringVar(&format, "format", "", `format output: "table", "table TEMPLATE", "json" or a Go TEMPLATE`)
	return cmd
}

// historyFormat picks the template like docker's newHistoryFormat: -q and
// -H=false only change the default table.
func historyFormat(format string, quiet, human bool) string {
	if format == "" || format == "table" {
		switch {
		case quiet:
			return "{{.ID}}"
		case !human:
			return historyNonHumanTableFormat
		}
		return historyTableFormat
	}
	return format
}

// historyRow is one step; its methods are the template fields, computed as
// docker's historyContext.
type historyRow struct {
	id, createdBy, comment string
	created, size          int64
	trunc, human           bool
}

// docker shows no age for dates before 2000 (SOURCE_DATE_EPOCH=0 builds).
var historyEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

func (r *historyRow) ID() string {
	if r.trunc {
		return shortID(r.id)
	}
	return r.id
}

func (r *historyRow) CreatedAt() string {
	return time.Unix(r.created, 0).Format(time.RFC3339)
}

func (r *historyRow) CreatedSince() string {
	if !r.human {
		return r.CreatedAt()
	}
	if r.created <= historyEpoch {
		return "N/A"
	}
	return ago(time.Unix(r.created, 0))
}

func (r *historyRow) CreatedBy() string {
	by := strings.ReplaceAll(r.createdBy, "\t", " ")
	if r.trunc {
		return cells.Ellipsis(by, 45)
	}
	return by
}

func (r *historyRow) Size() string {
	if r.human {
		return humanSize(r.size)
	}
	return strconv.FormatInt(r.size, 10)
}

func (r *historyRow) Comment() string { return r.comment }

// MarshalJSON is what {{json .}} and --format json print: every field.
func (r *historyRow) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"ID": r.ID(), "CreatedSince": r.CreatedSince(), "CreatedAt": r.CreatedAt(),
		"CreatedBy": r.CreatedBy(), "Size": r.Size(), "Comment": r.Comment(),
	})
}

// ellipsis cuts s to n characters, the last one "…" (docker's
// formatter.Ellipsis, counting every rune as one column).
// writeHistory renders rows with format like docker's formatter.
func writeHistory(w io.Writer, format string, rows []*historyRow) error {
	return writeFormatted(w, format, rows, historyHeaders)
}
