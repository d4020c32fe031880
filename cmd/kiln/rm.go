package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

func rmCmd() *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers",
		Long: `Remove containers like docker rm: the record, writable layer and log go;
the image stays. A running container is refused unless -f, which kills it
first. With -f a container that does not exist is reported but not an
error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			m := container.New(st)
			var errs []string
			for _, ref := range args {
				c, err := st.LookupContainer(ref)
				if err == nil {
					err = m.Remove(cmd.Context(), c, force)
				}
				if err != nil {
					if force && errors.Is(err, store.ErrNoSuchContainer) {
						fmt.Fprintln(os.Stderr, "Error:", err)
						continue
					}
					errs = append(errs, err.Error())
					continue
				}
				fmt.Println(ref)
			}
			if len(errs) > 0 {
				return errors.New(strings.Join(errs, "\n"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove anonymous volumes (kiln's containers have none)")
	return cmd
}

func containerPruneCmd() *cobra.Command {
	var force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Long: `Remove every stopped container, like docker container prune: their
writable layers and logs go, and "Total reclaimed space" is their size.
--filter until=DURATION|TIMESTAMP spares containers created within
DURATION or since TIMESTAMP; label=KEY[=VALUE] (label!=...) removes only
those with (without) the label.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			keep, err := containerPruneFilter(filters, time.Now())
			if err != nil {
				return err
			}
			if !force && !confirm(os.Stdin, os.Stdout, "WARNING! This will remove all stopped containers.") {
				return nil
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			rep, err := container.New(st).Prune(cmd.Context(), keep)
			if rep != nil {
				if len(rep.Deleted) > 0 {
					fmt.Printf("Deleted Containers:\n%s\n\n", strings.Join(rep.Deleted, "\n"))
				}
				fmt.Println("Total reclaimed space:", units.HumanSize(float64(rep.Reclaimed)))
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, `provide filter values (e.g. "until=24h", "label=KEY=VALUE")`)
	return cmd
}

// containerPruneFilter is docker's prune filters (until, label, label!)
// as the containers to spare.
func containerPruneFilter(filters []string, now time.Time) (func(*store.Container) bool, error) {
	var until time.Time
	var with, without []string
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		case k == "until":
			d, err := parseUntilAt([]string{f}, now)
			if err != nil {
				return nil, err
			}
			until = now.Add(-d)
		case k == "label":
			with = append(with, v)
		case k == "label!":
			without = append(without, v)
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	hasLabel := func(c *store.Container, term string) bool {
		k, v, hasValue := strings.Cut(term, "=")
		got, ok := c.Labels[k]
		return ok && (!hasValue || got == v)
	}
	return func(c *store.Container) bool {
		if !until.IsZero() && !c.Created.Before(until) {
			return true
		}
		for _, t := range with {
			if !hasLabel(c, t) {
				return true
			}
		}
		for _, t := range without {
			if hasLabel(c, t) {
				return true
			}
		}
		return false
	}, nil
}
