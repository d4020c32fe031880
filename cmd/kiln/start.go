package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	"github.com/spf13/cobra"
)

// eachContainer runs fn on every named container, as docker's verbs over
// several containers do: each one's error is printed as it happens, the
// others still run, and the verb fails if any did.
func eachContainer(names []string, fn func(m *container.Manager, c *store.Container) error) error {
	st, err := openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	m := container.New(st)
	failed := 0
	var last error
	for _, n := range names {
		c, err := st.LookupContainer(n)
		if err == nil {
			err = fn(m, c)
		}
		if err != nil {
			failed++
			last = err
			if len(names) > 1 {
				fmt.Fprintln(os.Stderr, "ERROR:", err)
			}
		}
	}
	if failed > 1 || failed == 1 && len(names) > 1 {
		return exitStatus(1)
	}
	return last
}

func startCmd() *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if attach || interactive {
				if len(args) > 1 {
					return errors.New("you cannot start and attach multiple containers at once")
				}
				st, err := openStore()
				if err != nil {
					return err
				}
				defer st.Close()
				c, err := st.LookupContainer(args[0])
				if err != nil {
					return err
				}
				return runAttached(cmd, st, container.New(st), c, interactive)
			}
			return eachContainer(args, func(m *container.Manager, c *store.Container) error {
				if _, err := m.Start(cmd.Context(), c, nil); err != nil {
					return err
				}
				fmt.Println(c.Name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach STDOUT/STDERR and wait for the container to exit")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach the container's STDIN")
	return cmd
}

func stopCmd() *cobra.Command {
	var seconds int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Long: `Send each container's stop signal (its image's STOPSIGNAL, else SIGTERM),
wait up to --time seconds for it to exit, then kill it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainerArg(args, func(m *container.Manager, c *store.Container) error {
				return m.Stop(cmd.Context(), c, time.Duration(seconds)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&seconds, "time", "t", 10, "seconds to wait for stop before killing it")
	return cmd
}

// eachContainerArg is eachContainer printing each argument as given once
// its container is done, as docker stop, kill and rm do.
func eachContainerArg(args []string, fn func(m *container.Manager, c *store.Container) error) error {
	i := 0
	return eachContainer(args, func(m *container.Manager, c *store.Container) error {
		for ; i < len(args); i++ {
			if lc, err := m.Store.LookupContainer(args[i]); err == nil && lc.ID == c.ID {
				break
			}
		}
		if err := fn(m, c); err != nil {
			return err
		}
		if i < len(args) {
			fmt.Println(args[i])
			i++
		}
		return nil
	})
}

func killCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainerArg(args, func(m *container.Manager, c *store.Container) error {
				return m.Kill(c, sig)
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send to the container")
	return cmd
}

func restartCmd() *cobra.Command {
	var seconds int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainerArg(args, func(m *container.Manager, c *store.Container) error {
				if err := m.Stop(cmd.Context(), c, time.Duration(seconds)*time.Second); err != nil {
					return err
				}
				_, err := m.Start(cmd.Context(), c, nil)
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&seconds, "time", "t", 10, "seconds to wait for stop before killing it")
	return cmd
}

func waitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(m *container.Manager, c *store.Container) error {
				code, err := m.Wait(cmd.Context(), c)
				if err != nil {
					return err
				}
				fmt.Println(code)
				return nil
			})
		},
	}
}

func execCmd() *cobra.Command {
	var o container.ExecOptions
	var interactive bool
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Tty && !isTerminal(os.Stdin) {
				return errors.New("the input device is not a TTY")
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := st.LookupContainer(args[0])
			if err != nil {
				return err
			}
			o.Args = args[1:]
			o.Stdout, o.Stderr = os.Stdout, os.Stderr
			if interactive || o.Tty {
				o.Stdin = os.Stdin
			}
			code, err := container.New(st).Exec(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&interactive, "interactive", "i", false, "keep STDIN open")
	f.BoolVarP(&o.Tty, "tty", "t", false, "allocate a pseudo-TTY")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set environment variables")
	f.StringVarP(&o.User, "user", "u", "", "user to run as (name|uid[:group|gid])")
	f.StringVarP(&o.Workdir, "workdir", "w", "", "working directory inside the container")
	return cmd
}
