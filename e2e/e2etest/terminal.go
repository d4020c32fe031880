package e2etest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// KilnTerminal runs the binary on this store with stderr (and stdin) on a
// new pseudo-terminal of cols×rows, as a person's shell would, and stdout
// on a pipe. It returns stdout, every byte written to the terminal, and
// the exit error.
func (s *Store) KilnTerminal(cols, rows int, args ...string) (stdout string, terminal []byte, err error) {
	s.T.Helper()
	ptm, pts, err := openPTY(cols, rows)
	if err != nil {
		s.T.Fatalf("pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	cmd := exec.Command(kilnBin, append([]string{"--root", s.Root}, args...)...)
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, &out, pts
	cmd.Env = append(os.Environ(), "TERM=xterm")
	if err := cmd.Start(); err != nil {
		pts.Close()
		s.T.Fatal(err)
	}
	pts.Close() // the child holds it; reads end (EIO) when it exits
	var raw bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&raw, ptm)
		copied <- err
	}()
	err = cmd.Wait()
	if cerr := <-copied; cerr != nil && !errors.Is(cerr, syscall.EIO) {
		s.T.Fatalf("read the pseudo-terminal: %v", cerr)
	}
	return out.String(), raw.Bytes(), err
}

// openPTY is posix_openpt, unlockpt and ptsname, with the window size set.
func openPTY(cols, rows int) (ptm, pts *os.File, err error) {
	ptm, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	ws := &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		ptm.Close()
		pts.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}

// Screen replays what a program writes to a terminal — text, carriage
// return, newline, and the escapes a live view uses (cursor up "ESC[nA",
// erase line "ESC[K", erase below "ESC[J") — so a test can check what a
// person sees rather than the bytes. Another escape fails the write.
type Screen struct {
	rows     [][]rune
	row, col int
}

func (s *Screen) Write(b []byte) (int, error) {
	str := string(b)
	for i := 0; i < len(str); {
		if strings.HasPrefix(str[i:], "\x1b[") {
			j := i + 2
			for j < len(str) && str[j] >= '0' && str[j] <= '9' {
				j++
			}
			if j == len(str) {
				return 0, fmt.Errorf("an escape cut short: %q", str[i:])
			}
			n, _ := strconv.Atoi(str[i+2 : j])
			switch str[j] {
			case 'A':
				s.row = max(s.row-n, 0)
			case 'K':
				s.cut()
			case 'J':
				s.cut()
				s.rows = s.rows[:s.row+1]
			default:
				return 0, fmt.Errorf("unexpected escape %q", str[i:j+1])
			}
			i = j + 1
			continue
		}
		r, size := utf8.DecodeRuneInString(str[i:])
		i += size
		switch r {
		case '\r':
			s.col = 0
		case '\n':
			s.row, s.col = s.row+1, 0
		default:
			s.grow()
			for len(s.rows[s.row]) <= s.col {
				s.rows[s.row] = append(s.rows[s.row], ' ')
			}
			s.rows[s.row][s.col] = r
			s.col++
		}
	}
	return len(b), nil
}

// cut erases from the cursor to the end of its row.
func (s *Screen) cut() {
	s.grow()
	s.rows[s.row] = s.rows[s.row][:min(s.col, len(s.rows[s.row]))]
}

func (s *Screen) grow() {
	for len(s.rows) <= s.row {
		s.rows = append(s.rows, nil)
	}
}

// String is the screen's rows, trailing blanks and empty last rows
// dropped.
func (s *Screen) String() string {
	var b strings.Builder
	for _, r := range s.rows {
		b.WriteString(strings.TrimRight(string(r), " "))
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
