package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/lock"
	"golang.org/x/sys/unix"
)

// MonitorCommand is the hidden kiln verb a detached container's monitor
// runs as: kiln --root ROOT MonitorCommand ID, with the container's lock
// as fd 3 and a pipe to its starter as fd 4.
const MonitorCommand = "container-monitor"

// spawnMonitor starts the detached monitor of c, whose bundle is ready,
// hands it c's lock l (held exclusively) and waits until the process runs
// or failed to start.
func (m *Manager) spawnMonitor(c *store.Container, l *lock.File) error {
	self := m.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command(self, "--root", m.Store.Root, MonitorCommand, c.ID)
	cmd.ExtraFiles = []*os.File{l.OSFile(), pw}
	// Its own session: no terminal, no signal of the starter's reaches
	// it, and it outlives the starter.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(os.Environ(), "KILN_RUNC="+m.Runc)
	if err := cmd.Start(); err != nil {
		pw.Close()
		m.teardown(c)
		return fmt.Errorf("start the container's monitor: %w", err)
	}
	pw.Close()
	msg, _ := io.ReadAll(bufio.NewReader(pr))
	cmd.Process.Release()
	switch s := strings.TrimSpace(string(msg)); {
	case s == "ok":
		return nil
	case s == "":
		return errors.New("the container's monitor exited before the container started")
	default:
		return errors.New(strings.TrimPrefix(s, "error: "))
	}
}

// RunMonitor is the detached monitor itself (the MonitorCommand verb): it
// runs container id's prepared process with its output going to the
// container's log, holding the lock it inherited, and records the end.
// The store st need not hold the store lock: a monitor must not keep
// garbage collection waiting for as long as its container runs (what the
// container uses, the GC keeps anyway).
func RunMonitor(st *store.Store, runcBin, id string) error {
	m := &Manager{Store: st, Runc: runcBin}
	lockFile, readyPipe := os.NewFile(3, "lock"), os.NewFile(4, "ready")
	if lockFile == nil || readyPipe == nil {
		return errors.New(MonitorCommand + " is started by kiln run -d and kiln start, not by hand")
	}
	// Neither may reach runc or the container: the lock must go with
	// this process, and the starter waits for the pipe's end.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	l := lock.Inherited(lockFile, lock.Exclusive)
	defer l.Close()
	ready := func(err error) {
		if err != nil {
			fmt.Fprintf(readyPipe, "error: %v\n", err)
		} else {
			fmt.Fprintln(readyPipe, "ok")
		}
		readyPipe.Close()
	}
	c, err := st.ReadContainer(id)
	if err != nil {
		ready(err)
		return err
	}
	log, err := m.openLog(c)
	if err != nil {
		ready(err)
		return err
	}
	defer log.Close()
	ios := stdio{out: log, err: log}
	if c.OpenStdin {
		// -i without an attached client: an open stdin that never
		// delivers, as docker keeps it, so `sh` waits instead of exiting.
		r, w, err := os.Pipe()
		if err != nil {
			ready(err)
			return err
		}
		defer w.Close()
		ios.in = r
	}
	if c.Tty {
		// -t without a client: a pseudo-terminal of the monitor's own,
		// its output copied to the log.
		master, slave, err := openPTY()
		if err != nil {
			ready(err)
			return err
		}
		defer master.Close()
		go io.Copy(log, master)
		ios.in, ios.out, ios.err = slave, slave, slave
		defer slave.Close()
	}
	signalIgnore()
	_, err = m.monitor(context.Background(), c, ios, ready)
	return err
}

// signalIgnore keeps the monitor alive through the hangups and interrupts
// of a session it no longer has.
func signalIgnore() {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
}

// openPTY opens a new pseudo-terminal pair.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
