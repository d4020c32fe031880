package main

import (
	"os"

	"github.com/kiln-build/kiln/progress"
	"golang.org/x/sys/unix"
)

// newProgress starts the build's progress on stderr in mode m, Auto
// resolved by whether stderr is a terminal.
func newProgress(m progress.Mode) *progress.Progress {
	fd := int(os.Stderr.Fd())
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	m = m.Resolve(err == nil, os.Getenv("TERM"))
	return progress.New(os.Stderr, m, progress.Options{Size: func() (int, int) {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil {
			return 0, 0
		}
		return int(ws.Col), int(ws.Row)
	}})
}
