package runc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// ResolveUser turns a Dockerfile USER value ("name", "uid", "name:group",
// "uid:gid", "" for root) into ids using the image's /etc/passwd and
// /etc/group, read inside rootfs. Like docker, a numeric uid need not exist
// (its gid is then 0), a name must.
func ResolveUser(rootfs, user string) (uid, gid uint32, extra []uint32, err error) {
	if user == "" {
		return 0, 0, nil, nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	passwd := readColonFile(rootfs, "/etc/passwd")
	groups := readColonFile(rootfs, "/etc/group")
	userName := ""
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid = uint32(n)
		for _, f := range passwd {
			if len(f) >= 4 && f[2] == name {
				userName = f[0]
				if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
					gid = uint32(g)
				}
				break
			}
		}
	} else {
		found := false
		for _, f := range passwd {
			if len(f) >= 4 && f[0] == name {
				u, err1 := strconv.ParseUint(f[2], 10, 32)
				g, err2 := strconv.ParseUint(f[3], 10, 32)
				if err1 != nil || err2 != nil {
					return 0, 0, nil, fmt.Errorf("user %q: malformed /etc/passwd entry", name)
				}
				uid, gid, userName, found = uint32(u), uint32(g), name, true
				break
			}
		}
		if !found {
			return 0, 0, nil, fmt.Errorf("unable to find user %s: no matching entries in passwd file", name)
		}
	}
	if hasGroup {
		g, err := resolveGroup(groups, group)
		if err != nil {
			return 0, 0, nil, err
		}
		gid = g
	}
	// like BuildKit (containerd's WithUser), the primary group is also a
	// supplementary one
	extra = append(extra, gid)
	if !hasGroup && userName != "" {
		// supplementary groups only when the group is not given explicitly, like docker
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == userName {
					if g, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(g) != gid {
						extra = append(extra, uint32(g))
					}
				}
			}
		}
	}
	return uid, gid, extra, nil
}

func resolveGroup(groups [][]string, group string) (uint32, error) {
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uint32(n), nil
	}
	for _, f := range groups {
		if len(f) >= 3 && f[0] == group {
			g, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("group %q: malformed /etc/group entry", group)
			}
			return uint32(g), nil
		}
	}
	return 0, fmt.Errorf("unable to find group %s: no matching entries in group file", group)
}

func readColonFile(rootfs, name string) [][]string {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
