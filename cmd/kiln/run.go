package main

import (
	"errors"
	"os"
	"strconv"

	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/spf13/cobra"
)

func runCmd() *cobra.Command {
	var rm bool
	var network, user, workdir string
	var env []string
	cmd := &cobra.Command{
		Use:   "run --rm IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in an ephemeral container, to check a result",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			si, err := st.LookupImage(args[0])
			if err != nil {
				return err
			}
			c := si.Config.Config
			argv := append([]string(nil), c.Entrypoint...)
			if len(args) > 1 {
				argv = append(argv, args[1:]...)
			} else {
				argv = append(argv, c.Cmd...)
			}
			if len(argv) == 0 {
				return errors.New("no command specified")
			}
			if user == "" {
				user = c.User
			}
			if workdir == "" {
				workdir = c.WorkingDir
			}
			w := ops.NewWorker(st, "")
			err = w.RunContainer(cmd.Context(), ops.ImageLayers(si), argv, append(append([]string(nil), c.Env...), env...), workdir, user, network, os.Stdout)
			var ee *runc.ExitError
			if errors.As(err, &ee) {
				return exitStatus(ee.Code)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after IMAGE belong to the command, like docker run
	f.BoolVar(&rm, "rm", true, "remove the container when it exits (always: kiln keeps no containers)")
	f.StringVar(&network, "network", "host", "network: host or none")
	f.StringVarP(&user, "user", "u", "", "user to run as")
	f.StringVarP(&workdir, "workdir", "w", "", "working directory")
	f.StringArrayVarP(&env, "env", "e", nil, "set environment variables")
	return cmd
}

// exitStatus makes kiln exit with this status, silently: what went wrong
// has been printed already (by the container, or by the verb itself).
type exitStatus int

func (e exitStatus) Error() string { return "container exited with status " + strconv.Itoa(int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }
