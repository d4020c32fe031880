package content

import "testing"

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"app", "docker.io/library/app:latest"},
		{"app:1.0", "docker.io/library/app:1.0"},
		{"library/app", "docker.io/library/app:latest"},
		{"docker.io/library/app:latest", "docker.io/library/app:latest"},
		{"user/app:v2", "docker.io/user/app:v2"},
		{"localhost:5000/x/y:1", "localhost:5000/x/y:1"},
		{"localhost:5000/x/y", "localhost:5000/x/y:latest"},
		{"localhost/app", "localhost/app:latest"},
		{"ghcr.io/org/app:1", "ghcr.io/org/app:1"},
		// A digest reference keeps its digest and gets no tag.
		{
			"app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"docker.io/library/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		},
	} {
		got, err := NormalizeName(tc.in)
		if err != nil {
			t.Errorf("NormalizeName(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeNameRejectsInvalidNames(t *testing.T) {
	for _, in := range []string{
		"",
		"App",
		"app:",
		"app:has space",
		"a b",
		"app:tag:more",
		"-app",
		"app@sha256:short",
		"app:x/y",
	} {
		if got, err := NormalizeName(in); err == nil {
			t.Errorf("NormalizeName(%q) = %q, want an error", in, got)
		}
	}
}

func TestFamiliarName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"docker.io/library/app:1", "app:1"},
		{"docker.io/library/app:latest", "app:latest"},
		{"docker.io/user/app:v2", "user/app:v2"},
		{"localhost:5000/x/y:1", "localhost:5000/x/y:1"},
		{"ghcr.io/org/app:1", "ghcr.io/org/app:1"},
		// Not a name: shown as is.
		{"Not A Name", "Not A Name"},
		{"", ""},
	} {
		if got := FamiliarName(tc.in); got != tc.want {
			t.Errorf("FamiliarName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFamiliarNameUndoesNormalizeName(t *testing.T) {
	for _, in := range []string{"app:1", "user/app:v2", "localhost:5000/x/y:1"} {
		n, err := NormalizeName(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := FamiliarName(n); got != in {
			t.Errorf("FamiliarName(NormalizeName(%q)) = %q", in, got)
		}
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag string
	}{
		{"docker.io/library/app:1", "app", "1"},
		{"docker.io/library/app", "app", ""},
		{"docker.io/user/app:v2", "user/app", "v2"},
		{"localhost:5000/x/y:1", "localhost:5000/x/y", "1"},
		{"localhost:5000/x/y", "localhost:5000/x/y", ""},
		{"docker.io/library/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "app", ""},
		{"Not A Name", "Not A Name", ""},
	} {
		repo, tag := SplitName(tc.in)
		if repo != tc.repo || tag != tc.tag {
			t.Errorf("SplitName(%q) = %q, %q, want %q, %q", tc.in, repo, tag, tc.repo, tc.tag)
		}
	}
}
