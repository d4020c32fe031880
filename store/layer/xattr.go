package layer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// listXattrs returns the names of the xattrs on path without following a
// final symlink. A filesystem without xattr support has none.
func listXattrs(path string) ([]string, error) {
	buf, err := readSized(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// getXattr returns the value of xattr name on path (not following a final
// symlink); ok is false if it is not set.
func getXattr(path, name string) (value []byte, ok bool, err error) {
	buf, err := readSized(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get xattr %s of %s: %w", name, path, err)
	}
	return buf, true, nil
}

// readSized calls a size-querying syscall wrapper (listxattr, getxattr) first
// with no buffer to learn the size, then with a buffer of that size. The
// value can grow between the two calls, hence the retry on ERANGE.
func readSized(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
