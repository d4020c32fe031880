// Package layer converts between OCI layer tars and overlayfs-style snapshot
// directories.
//
// A snapshot directory holds what one layer adds or changes, in the form
// overlayfs uses for an upper dir: a deleted path is a whiteout (a char
// device 0/0) and a directory that hides everything below it carries the
// xattr trusted.overlay.opaque=y. In a layer tar the same facts are the OCI
// whiteout files ".wh.<name>" and "<dir>/.wh..wh..opq". WriteTar turns a
// directory into a tar, Apply turns a tar into a directory.
//
// WriteTar is deterministic (the same directory always gives the same bytes,
// hence the same diffID) so that rebuilding an unchanged step reproduces the
// layer digest. Apply treats the tar as hostile: every path is resolved inside
// the destination, so a layer can never create or change anything outside it.
package layer

import (
	"errors"
	"strings"
)

// ErrUnsafePath is wrapped by errors for entries that would escape dir.
var ErrUnsafePath = errors.New("path escapes the layer root")

// Names the OCI image spec reserves for whiteouts in layer tars.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes names the spec reserves for metadata (aufs used
	// them for hardlink bookkeeping); only the opaque marker means anything.
	whiteoutMeta   = ".wh..wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// Xattrs overlayfs uses to mark an opaque directory. A mount with the
// "userxattr" option (unprivileged overlay) uses the user.* name, so
// WriteTar honours both; Apply writes the trusted.* one, which is what kiln's
// own (privileged) mounts read.
const (
	opaqueXattr     = "trusted.overlay.opaque"
	userOpaqueXattr = "user.overlay.opaque"
)

// paxXattrPrefix is how PAX tars (GNU tar, Docker, containerd) carry xattrs.
const paxXattrPrefix = "SCHILY.xattr."

// keepXattr reports whether an xattr is part of a file's content in a layer.
// security.capability is needed for binaries like ping; user.* is
// application data. trusted.* (overlay's own bookkeeping among others) and
// security.selinux (labels belong to the host running the container, not to
// the image) are dropped, as is overlay's bookkeeping under user.overlay.*
// when a mount uses "userxattr". Apply uses the same filter, so a hostile
// tar cannot plant trusted.overlay.redirect and the like in a snapshot.
func keepXattr(name string) bool {
	if name == "security.capability" {
		return true
	}
	return strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "user.overlay.")
}
