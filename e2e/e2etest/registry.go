package e2etest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// PushWithSkopeo saves image from s and copies it with skopeo to dest
// (ADDR/REPO:TAG), so that a registry holds it without kiln push; extra
// goes to skopeo (credentials).
func PushWithSkopeo(t *testing.T, s *Store, image, dest string, extra ...string) {
	t.Helper()
	skopeo := testenv.RequireCommand(t, "skopeo")
	tarPath := filepath.Join(t.TempDir(), "img.tar")
	s.MustKiln("save", "-o", tarPath, image)
	tag := "latest"
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		tag = image[i+1:]
	}
	args := append([]string{"copy", "--quiet", "--dest-tls-verify=false"}, extra...)
	args = append(args, "oci-archive:"+tarPath+":"+tag, "docker://"+dest)
	if out, err := exec.Command(skopeo, args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy %s to %s: %v\n%s", image, dest, err, out)
	}
}
