package dockerfile_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
)

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name     string
		src      string
		target   string
		wantLine int
		// every substring must be in the error message
		want []string
	}{
		{
			name:     "unknown instruction",
			src:      "FROM busybox\nRUN true\nFROBNICATE now\n",
			wantLine: 3,
			want:     []string{"Dockerfile:3:", "unknown instruction", "FROBNICATE"},
		},
		{
			name:     "unknown target",
			src:      "FROM busybox AS build\nFROM busybox AS release\n",
			target:   "nope",
			wantLine: 0,
			want:     []string{`target stage "nope" could not be found`},
		},
		{
			name:     "COPY --from an unknown stage or image",
			src:      "FROM busybox AS build\nRUN true\nFROM busybox\nCOPY --from=biuld /out /out\n",
			wantLine: 4,
			want:     []string{"Dockerfile:4:", "--from=biuld", `image "biuld" not found`},
		},
		{
			name:     "FROM a missing image",
			src:      "FROM doesnotexist:1.0\nRUN true\n",
			wantLine: 1,
			want:     []string{"Dockerfile:1:", "FROM doesnotexist:1.0", "not found"},
		},
		{
			name:     "FROM a missing image through a meta ARG",
			src:      "ARG BASE=missing\nFROM ${BASE}\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "FROM missing", "not found"},
		},
		{
			name:     "a stage copying from itself",
			src:      "FROM busybox AS a\nRUN true\nCOPY --from=a /x /y\n",
			wantLine: 1,
			want:     []string{`stage "a" depends on itself`},
		},
		{
			name:     "two stages copying from each other",
			src:      "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
			wantLine: 3, // the target b needs a, which needs b
			want:     []string{`stage "b" depends on itself`},
		},
		{
			name:     "empty Dockerfile",
			src:      "# only a comment\n",
			wantLine: 1,
			want:     []string{"Dockerfile:"},
		},
		{
			name:     "instruction before FROM",
			src:      "RUN true\nFROM busybox\n",
			wantLine: 1,
			want:     []string{"Dockerfile:1:"},
		},
		{
			name:     "RUN --security=insecure needs --allow",
			src:      "FROM busybox\nRUN --security=insecure true\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "RUN", "--allow security.insecure"},
		},
		{
			name:     "RUN --mount from an unknown image",
			src:      "FROM busybox\nRUN --mount=type=bind,from=nosuch,target=/c true\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "from=nosuch"},
		},
		{
			name:     "ADD of a git repository",
			src:      "FROM busybox\nADD https://github.com/moby/buildkit.git /src\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "git source", "cannot fetch"},
		},
		{
			name:     "foreign platform",
			src:      "FROM --platform=linux/s390x busybox\n",
			wantLine: 1,
			want:     []string{"Dockerfile:1:", "linux/s390x", "only the host platform linux/amd64"},
		},
		{
			name:     "empty VOLUME",
			src:      "FROM busybox\nVOLUME [\"\"]\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "VOLUME specified can not be an empty string"},
		},
		{
			name:     "invalid EXPOSE protocol",
			src:      "FROM busybox\nEXPOSE 80/http\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "EXPOSE", "80/http"},
		},
		{
			name:     "invalid EXPOSE range",
			src:      "FROM busybox\nEXPOSE 90-80\n",
			wantLine: 2,
			want:     []string{"Dockerfile:2:", "EXPOSE", "90-80"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := baseOptions(t, tc.src)
			opts.Target = tc.target
			b, err := dockerfile.Compile(context.Background(), opts)
			if err == nil {
				t.Fatalf("Compile succeeded:\n%s", dockerfile.Dump(b))
			}
			var de *dockerfile.Error
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *dockerfile.Error", err, err)
			}
			if de.Line != tc.wantLine {
				t.Errorf("Line = %d, want %d (%v)", de.Line, tc.wantLine, err)
			}
			if de.File != "Dockerfile" {
				t.Errorf("File = %q, want Dockerfile", de.File)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err.Error(), w)
				}
			}
		})
	}
}

func TestErrorMessageNamesFileAndLine(t *testing.T) {
	cases := []struct {
		err  *dockerfile.Error
		want string
	}{
		{&dockerfile.Error{File: "build/Dockerfile", Line: 7, Err: errors.New("boom")}, "build/Dockerfile:7: boom"},
		{&dockerfile.Error{File: "Dockerfile", Err: errors.New("boom")}, "Dockerfile: boom"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, tc.err.Err) {
			t.Errorf("%v does not unwrap to its cause", tc.err)
		}
	}
}

func TestFilenameAppearsInErrorsAndLocations(t *testing.T) {
	opts := baseOptions(t, "FROM busybox\nRUN true\n")
	opts.Filename = "docker/app.Dockerfile"
	b, err := dockerfile.Compile(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Target.Location; got != "docker/app.Dockerfile:2" {
		t.Errorf("RUN location %q, want docker/app.Dockerfile:2", got)
	}

	opts = baseOptions(t, "FROM busybox\nBOGUS\n")
	opts.Filename = "docker/app.Dockerfile"
	_, err = dockerfile.Compile(context.Background(), opts)
	if err == nil || !strings.HasPrefix(err.Error(), "docker/app.Dockerfile:2:") {
		t.Errorf("error %v, want it prefixed with docker/app.Dockerfile:2:", err)
	}
}

// Every vertex a target depends on is listed exactly once in Vertices, and
// nothing else is: progress numbering and the plan rely on it.
func TestVerticesListTheTargetsGraphOnce(t *testing.T) {
	cases := []struct {
		name, src, target string
	}{
		{"single stage", "FROM busybox\nRUN a\nWORKDIR /w\nCOPY x .\n", ""},
		{"stage without steps as a base", "FROM busybox AS base\nFROM base\nRUN b\n", ""},
		{"chain of stages", "FROM busybox AS a\nRUN a\nFROM a AS b\nFROM b AS c\nRUN c\n", ""},
		{"copy from an image", "FROM busybox\nCOPY --from=alpine /etc/os-release /\nCOPY --from=alpine /bin/sh /sh\n", ""},
		{"copy from a stage without steps", "FROM alpine AS tools\nFROM busybox\nCOPY --from=tools /bin/sh /sh\n", ""},
		{"target skips later stages", "FROM busybox AS a\nRUN a\nFROM a AS b\nRUN b\nFROM busybox AS c\nRUN c\n", "b"},
		{"scratch", "FROM scratch\nCOPY x /\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := baseOptions(t, tc.src)
			opts.Target = tc.target
			b, err := dockerfile.Compile(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			listed := map[*solver.Vertex]int{}
			for _, v := range b.Vertices {
				listed[v]++
			}
			reachable := map[*solver.Vertex]bool{}
			var walk func(v *solver.Vertex)
			walk = func(v *solver.Vertex) {
				if reachable[v] {
					return
				}
				reachable[v] = true
				for _, in := range v.Inputs {
					walk(in)
				}
			}
			walk(b.Target)
			for v, n := range listed {
				if n != 1 {
					t.Errorf("%q listed %d times", v.Name, n)
				}
				if !reachable[v] {
					t.Errorf("%q listed but not needed by the target", v.Name)
				}
			}
			for v := range reachable {
				if listed[v] == 0 {
					t.Errorf("%q needed by the target but not listed", v.Name)
				}
				if v.Location == "" {
					t.Errorf("%q has no location", v.Name)
				}
			}
		})
	}
}

func TestCompileSetsNoCacheOnStepsOnly(t *testing.T) {
	opts := baseOptions(t, "FROM busybox\nRUN a\nCOPY x /x\nWORKDIR /w\n")
	opts.NoCache = true
	b, err := dockerfile.Compile(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range b.Vertices {
		if v.NoCache == v.Source {
			t.Errorf("%q: NoCache %v, Source %v: steps (only) must be NoCache", v.Name, v.NoCache, v.Source)
		}
	}
}

func TestCopyFromContextAndFromStageAreDistinct(t *testing.T) {
	opts := baseOptions(t, "FROM busybox AS build\nRUN make\nFROM busybox\nCOPY a /a\nCOPY --from=build /b /b\n")
	b, err := dockerfile.Compile(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	fromCtx := b.Vertices[len(b.Vertices)-2].Op.(*ops.Copy)
	fromStage := b.Vertices[len(b.Vertices)-1].Op.(*ops.Copy)
	if fromCtx.Context != opts.Context {
		t.Error("COPY from the context does not read the build context")
	}
	if fromStage.Context != nil {
		t.Error("COPY --from=build reads the build context")
	}
	if n := len(b.Vertices[len(b.Vertices)-1].Inputs); n != 2 {
		t.Errorf("COPY --from has %d inputs, want 2 (destination, source)", n)
	}
}
