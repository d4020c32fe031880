package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// createFlags are what docker run and docker create share.
type createFlags struct {
	opts       container.CreateOptions
	entrypoint string
}

func (cf *createFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after IMAGE belong to the command, like docker run
	o := &cf.opts
	f.StringVar(&o.Name, "name", "", "assign a name to the container")
	f.BoolVar(&o.AutoRemove, "rm", false, "remove the container when it exits")
	f.StringVar(&o.Network, "network", "host", "network: host (the host's) or none (no network)")
	f.StringVar(&o.Network, "net", "host", "network (--network)")
	f.MarkHidden("net")
	f.StringVarP(&o.User, "user", "u", "", "user to run as (name|uid[:group|gid])")
	f.StringVarP(&o.Workdir, "workdir", "w", "", "working directory inside the container")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set environment variables (NAME=VALUE, or NAME to pass this one's)")
	f.StringArrayVarP(&o.Binds, "volume", "v", nil, "bind mount a host directory: HOST:CONTAINER[:ro]")
	f.StringVar(&cf.entrypoint, "entrypoint", "", "overwrite the image's ENTRYPOINT")
	f.BoolVarP(&o.Stdin, "interactive", "i", false, "keep STDIN open")
	f.BoolVarP(&o.Tty, "tty", "t", false, "allocate a pseudo-TTY")
}

// options completes the create options from the arguments IMAGE [CMD...].
func (cf *createFlags) options(cmd *cobra.Command, args []string) container.CreateOptions {
	o := cf.opts
	o.Image, o.Cmd = args[0], args[1:]
	o.EntrypointSet = cmd.Flags().Changed("entrypoint")
	o.Entrypoint = cf.entrypoint
	return o
}

func runCmd() *cobra.Command {
	var cf createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Long: `Create a container from IMAGE and run COMMAND in it (the image's ENTRYPOINT
and CMD by default), like docker run. Without --rm the container stays
after it exits: kiln ps -a lists it, kiln diff shows what it changed, kiln
commit makes an image of it, kiln rm removes it. With -d it runs in the
background, with no kiln process holding the terminal, and kiln prints its
ID; kiln logs, exec, stop and kill reach it. No daemon: a small monitor
process (a re-executed kiln) waits for it and records how it ended.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := cf.options(cmd, args)
			if o.Tty && !detach && !isTerminal(os.Stdin) {
				return errors.New("the input device is not a TTY")
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			m := container.New(st)
			c, err := m.Create(cmd.Context(), o)
			if err != nil {
				return err
			}
			if detach {
				if _, err := m.Start(cmd.Context(), c, nil); err != nil {
					return err
				}
				fmt.Println(c.ID)
				return nil
			}
			return runAttached(cmd, st, m, c, o.Stdin || o.Tty)
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run the container in the background and print its ID")
	return cmd
}

func createCmd() *cobra.Command {
	var cf createFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container without starting it",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := container.New(st).Create(cmd.Context(), cf.options(cmd, args))
			if err != nil {
				return err
			}
			fmt.Println(c.ID)
			return nil
		},
	}
	cf.add(cmd)
	return cmd
}

// runAttached runs c in the foreground wired to this terminal; kiln exits
// with the container's exit status.
func runAttached(cmd *cobra.Command, st *store.Store, m *container.Manager, c *store.Container, stdin bool) error {
	a := &container.Attach{Stdout: os.Stdout, Stderr: os.Stderr}
	if stdin {
		a.Stdin = os.Stdin
	}
	// Once the process runs, this kiln needs the store lock no more:
	// what the container uses the GC keeps for as long as it exists, and
	// a long-running container must not hold up kiln prune.
	a.Started = func() { st.Close() }
	code, err := m.Start(cmd.Context(), c, a)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// monitorCmd is the detached container's monitor (container.RunMonitor),
// started by run -d and start: not for people to type.
func monitorCmd() *cobra.Command {
	return &cobra.Command{
		Use:    container.MonitorCommand + " ID",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore()
			if err != nil {
				return err
			}
			st.Close() // see container.RunMonitor: no store lock for a monitor
			return container.RunMonitor(st, os.Getenv("KILN_RUNC"), args[0])
		},
	}
}

// exitStatus makes kiln exit with this status, silently: what went wrong
// has been printed already (by the container, or by the verb itself).
type exitStatus int

func (e exitStatus) Error() string { return "container exited with status " + strconv.Itoa(int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }
