package ops

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/kiln-build/kiln/cache/record"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func components(t *testing.T, op interface {
	CacheKey(context.Context) ([]record.Component, error)
}) []record.Component {
	t.Helper()
	comps, err := op.CacheKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return comps
}

func TestDescribeNamesTheInstructionOfEachOp(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   definition
		want string
	}{
		{"shell form RUN", &Exec{Args: []string{"/bin/sh", "-c", "apt-get update &&\n    apt-get install -y   curl"}}, "RUN apt-get update && apt-get install -y curl"},
		{"shell form RUN under SHELL", &Exec{Args: []string{"/bin/bash", "-c", "make"}}, "RUN make"},
		{"exec form RUN", &Exec{Args: []string{"/app/build", "--fast"}}, "RUN /app/build --fast"},
		{"COPY", &Copy{Sources: []string{"a", "b"}, Dest: "/dst/"}, "COPY a b /dst/"},
		{"ADD", &Copy{Sources: []string{"a.tar"}, Dest: "/", Add: true}, "ADD a.tar /"},
		{"WORKDIR", &Mkdir{Path: "/x"}, "WORKDIR /x"},
		{"COPY heredoc", &WriteFiles{Files: []InlineFile{{Path: "/etc/x", Data: "x"}, {Path: "/etc/y"}}}, "COPY <<EOF /etc/x /etc/y"},
		{"base image", &Image{Ref: "busybox", Manifest: ocispec.Descriptor{Digest: "sha256:abc"}}, "image"},
		{"scratch", Scratch{}, "scratch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Describe(components(t, tc.op)); got != tc.want {
				t.Errorf("Describe = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDescribeNamesADownloadByURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("data")) }))
	defer srv.Close()
	op, err := testWorker(t).Bind(&Download{URL: srv.URL + "/f.txt", Dest: "/srv/"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Describe(components(t, op)), "ADD "+srv.URL+"/f.txt /srv/"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestDescribeShowsAnUnknownOpByItsKind(t *testing.T) {
	if got := Describe([]record.Component{{Name: "op", Value: "merge"}}); got != "merge" {
		t.Errorf("Describe = %q, want merge", got)
	}
}

func TestCacheMountIDsListsOnlyCacheMounts(t *testing.T) {
	run := &Exec{Args: []string{"make"}, Mounts: []Mount{
		{Type: "cache", Target: "/go/pkg/mod", CacheID: "gomod"},
		{Type: "bind", Target: "/src", Source: "."},
		{Type: "tmpfs", Target: "/tmp"},
		{Type: "cache", Target: "/root/.npm", CacheID: "npm", Sharing: "locked"},
	}}
	for _, tc := range []struct {
		name  string
		comps []record.Component
		want  []string
	}{
		{"RUN with mounts", components(t, run), []string{"gomod", "npm"}},
		{"RUN without mounts", components(t, &Exec{Args: []string{"make"}}), nil},
		{"COPY", components(t, &Copy{Sources: []string{"a"}, Dest: "/"}), nil},
		{"a record's mounts", []record.Component{{Name: "op", Value: "exec"}, {Name: "mounts", Value: `[{"type":"cache","target":"/go/pkg/mod","id":"gomod"}]`}}, []string{"gomod"}},
		{"unreadable mounts", []record.Component{{Name: "mounts", Value: "{"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CacheMountIDs(tc.comps); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("CacheMountIDs = %q, want %q", got, tc.want)
			}
		})
	}
}
