// Command kiln is a daemonless container image builder. Each verb lives in
// its own file and is a thin layer over a library call.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

var rootDir string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "Build container images from Dockerfiles, without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&rootDir, "root", store.DefaultRoot(), "store directory (env KILN_ROOT)")
	addRegistryFlags(root.PersistentFlags())
	root.AddCommand(buildCmd(), imagesCmd(), doctorCmd(), tagCmd(), rmiCmd(), saveCmd(), loadCmd(), importCmd(),
		inspectCmd(), historyCmd(), runCmd(), pullCmd(), pushCmd(), dfCmd(), pruneCmd(), imageCmd(),
		buildsCmd(), logsCmd(), explainCmd(), layersCmd(), diffCmd(), commitCmd(),
		createCmd(), startCmd(), stopCmd(), killCmd(), restartCmd(), waitCmd(), execCmd(), monitorCmd(),
		psCmd(), rmCmd(), containerCmd())
	err := root.ExecuteContext(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		var status exitStatus
		if errors.As(err, &status) {
			os.Exit(int(status)) // already told: the container's or the verb's own output says why
		}
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		var ee exitCoder
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		os.Exit(1)
	}
}

type exitCoder interface{ ExitCode() int }

// openStore opens the store named by --root.
func openStore() (*store.Store, error) {
	s, err := store.Open(rootDir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}
