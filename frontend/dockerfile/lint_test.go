package dockerfile_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// lint compiles src (every stage) and returns its warnings as
// "LINE Rule: message" and the compile error.
func lint(t *testing.T, opts dockerfile.Options) ([]string, error) {
	t.Helper()
	var got []string
	opts.AllStages = opts.Target == ""
	opts.Lint = func(w dockerfile.Warning) {
		got = append(got, fmt.Sprintf("%d %s: %s", w.Line(), w.Rule, w.Message))
	}
	_, err := dockerfile.Compile(t.Context(), opts)
	return got, err
}

// Each rule, BuildKit's and kiln's, fires on a Dockerfile made to break
// it and stays quiet on its fixed twin.
func TestLintRules(t *testing.T) {
	buildArgs := map[string]map[string]string{"empty default base": {"TAG": "latest"}}
	for _, c := range []struct {
		name, rule string
		fires      string // a Dockerfile on which rule fires…
		want       string // …with this warning ("LINE Rule: message" prefix)
		quiet      string // a Dockerfile on which it does not
	}{
		{"stage name casing", "StageNameCasing", "FROM busybox AS Build\n", "1 StageNameCasing: Stage name 'Build' should be lowercase",
			"FROM busybox AS build\n"},
		{"from/as casing", "FromAsCasing", "FROM busybox as build\n", "1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
			"from busybox as build\n"},
		{"empty continuation", "NoEmptyContinuation", "FROM busybox\nRUN echo a \\\n\n  b\n", "4 NoEmptyContinuation: Empty continuation line",
			"FROM busybox\nRUN echo a \\\n  b\n"},
		{"instruction casing", "ConsistentInstructionCasing", "FROM busybox\nRUN true\nrun true\n",
			"3 ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase)",
			"FROM busybox\nRUN true\n"},
		{"mixed-case instruction", "ConsistentInstructionCasing", "from busybox\nrun true\nRun true\n",
			"3 ConsistentInstructionCasing: Command 'Run' should match the case of the command majority (lowercase)",
			"from busybox\nrun true\n"},
		{"duplicate stage", "DuplicateStageName", "FROM busybox AS a\nFROM busybox AS a\n",
			`2 DuplicateStageName: Duplicate stage name "a", stage names should be unique`, "FROM busybox AS a\nFROM busybox AS b\n"},
		{"reserved stage", "ReservedStageName", "FROM busybox AS scratch\n",
			`1 ReservedStageName: Stage name should not use the same name as reserved stage "scratch"`, "FROM busybox AS base\n"},
		{"shell-form CMD", "JSONArgsRecommended", "FROM busybox\nCMD echo hi\n",
			"2 JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
			"FROM busybox\nCMD [\"echo\", \"hi\"]\n"},
		{"shell-form ENTRYPOINT with a SHELL", "JSONArgsRecommended", "FROM busybox\nENTRYPOINT run\n",
			"2 JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT",
			"FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nENTRYPOINT run\n"},
		{"maintainer", "MaintainerDeprecated", "FROM busybox\nMAINTAINER me\n",
			"2 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label", "FROM busybox\nLABEL org.opencontainers.image.authors=me\n"},
		{"undefined FROM arg", "UndefinedArgInFrom", "ARG TAG=latest\nFROM busybox:${TGA:-latest}\n",
			"2 UndefinedArgInFrom: FROM argument 'TGA' is not declared (did you mean TAG?)", "ARG TAG=latest\nFROM busybox:${TAG}\n"},
		{"relative workdir", "WorkdirRelativePath", "FROM busybox\nWORKDIR app\n",
			`2 WorkdirRelativePath: Relative workdir "app" can have unexpected results if the base image changes`,
			"FROM busybox\nWORKDIR /srv\nWORKDIR app\n"},
		{"relative workdir after the parent stage's", "WorkdirRelativePath", "FROM busybox AS a\nRUN true\nFROM a\nWORKDIR app\n",
			"4 WorkdirRelativePath:", "FROM busybox AS a\nWORKDIR /srv\nFROM a\nWORKDIR app\n"},
		{"undefined variable", "UndefinedVar", "FROM busybox\nENV P=$PAHT\n",
			"2 UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?)", "FROM busybox\nARG PAHT\nENV P=$PAHT\nRUN echo $NOT_EXPANDED\n"},
		{"two CMDs", "MultipleInstructionsDisallowed", "FROM busybox\nCMD [\"a\"]\nCMD [\"b\"]\n",
			"2 MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used",
			"FROM busybox\nCMD [\"a\"]\nFROM busybox\nCMD [\"b\"]\n"},
		{"two HEALTHCHECKs", "MultipleInstructionsDisallowed", "FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"true\"]\n",
			"2 MultipleInstructionsDisallowed: Multiple HEALTHCHECK", "FROM busybox\nHEALTHCHECK NONE\n"},
		{"legacy ENV", "LegacyKeyValueFormat", "FROM busybox\nENV A b\n",
			`2 LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format`, "FROM busybox\nENV A=b\n"},
		{"redundant platform", "RedundantTargetPlatform", "FROM --platform=$TARGETPLATFORM busybox\n",
			"1 RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
			"FROM --platform=$BUILDPLATFORM busybox\n"},
		{"secret ARG", "SecretsUsedInArgOrEnv", "FROM busybox\nARG DB_PASSWORD\n",
			`2 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "DB_PASSWORD")`, "FROM busybox\nARG PUBLIC_KEY\nARG TOKEN_FILE\n"},
		{"secret ENV", "SecretsUsedInArgOrEnv", "FROM busybox\nENV API_KEY=x\n", `2 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "API_KEY")`,
			"FROM busybox\nENV KEYBOARD=us\n"},
		{"empty default base", "InvalidDefaultArgInFrom", "ARG TAG\nFROM busybox:${TAG}\n",
			"2 InvalidDefaultArgInFrom: Default value for ARG busybox:${TAG} results in empty or invalid base image name",
			"ARG TAG=latest\nFROM busybox:${TAG}\n"},
		{"constant platform", "FromPlatformFlagConstDisallowed", "FROM --platform=linux/amd64 busybox AS build\n",
			`1 FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value "linux/amd64"`,
			"FROM --platform=linux/amd64 busybox AS build-amd64\n"},
		{"upper-case protocol", "ExposeProtoCasing", "FROM busybox\nEXPOSE 80/TCP\n",
			"2 ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase", "FROM busybox\nEXPOSE 80/tcp\n"},
		{"host port", "ExposeInvalidFormat", "FROM busybox\nEXPOSE 8080:80\n",
			"2 ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'", "FROM busybox\nEXPOSE 80\n"},
		{"description comment", "InvalidDefinitionDescription", "# check=experimental=InvalidDefinitionDescription\nFROM busybox\n# a comment\nARG foo=1\n",
			"4 InvalidDefinitionDescription: Comment for ARG should follow the format: `# foo <description>`",
			"# check=experimental=InvalidDefinitionDescription\nFROM busybox\n# foo is the thing\nARG foo=1\n"},

		{"whole context before npm ci", "ContextCopiedBeforeInstall", "FROM busybox\nWORKDIR /app\nCOPY . .\nRUN npm ci\n",
			`3 ContextCopiedBeforeInstall: COPY . on line 3 comes before "npm ci" on line 4: any change to a copied file re-runs the install`,
			"FROM busybox\nWORKDIR /app\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\n"},
		{"directory before pip install", "ContextCopiedBeforeInstall", "FROM busybox\nCOPY src/ /app/\nRUN pip install -r /app/requirements.txt\n",
			`2 ContextCopiedBeforeInstall: COPY src/ on line 2 comes before "pip install" on line 3`,
			"FROM busybox\nCOPY requirements.txt /app/\nRUN pip install -r /app/requirements.txt\n"},
		{"context before apt-get install", "ContextCopiedBeforeInstall", "FROM busybox\nCOPY . /src\nRUN apt-get update && apt-get install -y gcc\n",
			`2 ContextCopiedBeforeInstall: COPY . on line 2 comes before "apt-get install"`,
			"FROM busybox\nRUN apt-get update && apt-get install -y gcc\nCOPY . /src\nRUN make -C /src\n"},
		{"go mod download after COPY --from", "ContextCopiedBeforeInstall", "FROM busybox\nCOPY . .\nRUN go mod download\n",
			`2 ContextCopiedBeforeInstall: COPY . on line 2 comes before "go mod download"`,
			"FROM busybox AS src\nFROM busybox\nCOPY --from=src / /src\nRUN go mod download\n"},
		{"commit ARG before the work", "VolatileArgEarly", "FROM busybox\nARG GIT_COMMIT\nRUN echo $GIT_COMMIT > /commit\nRUN make\nCOPY . /src\n",
			"2 VolatileArgEarly: ARG GIT_COMMIT changes from build to build and reaches the step on line 3: 2 steps that do not use it re-run whenever it changes",
			"FROM busybox\nRUN make\nCOPY . /src\nARG GIT_COMMIT\nRUN echo $GIT_COMMIT > /commit\nLABEL commit=$GIT_COMMIT\n"},
		{"unused build date ARG in scope of a RUN", "VolatileArgEarly", "FROM busybox\nARG BUILD_DATE\nRUN make\nRUN make install\n",
			"2 VolatileArgEarly: ARG BUILD_DATE changes from build to build and reaches the step on line 3: 2 steps that do not use it re-run",
			"FROM busybox\nARG NODE_VERSION=20\nARG KUBECTL_SHA=0123\nARG RUNTIME=node\nRUN make\nRUN make install\n"},
		{"git sha ARG", "VolatileArgEarly", "FROM busybox\nARG GIT_SHA\nRUN make\nRUN make install\n",
			"2 VolatileArgEarly: ARG GIT_SHA changes from build to build", "FROM busybox\nRUN make\nRUN make install\nARG GIT_SHA\nLABEL sha=$GIT_SHA\n"},
		{"version ENV early", "VolatileArgEarly", "FROM busybox\nARG VERSION\nENV APP_VERSION=$VERSION\nCOPY app /app\nRUN build --version=$APP_VERSION\nRUN test\n",
			"3 VolatileArgEarly: ENV APP_VERSION changes from build to build and reaches the step on line 5: 1 step that does not use it re-runs",
			"FROM busybox\nCOPY app /app\nRUN test\nARG VERSION\nENV APP_VERSION=$VERSION\n"},
		{"commit ARG used only by the last RUN", "VolatileArgEarly", "FROM busybox\nARG GIT_SHA\nRUN apt-get install -y make\nRUN echo $GIT_SHA > /sha\n",
			"2 VolatileArgEarly: ARG GIT_SHA changes from build to build and reaches the step on line 3: 1 step that does not use it re-runs whenever it changes",
			"FROM busybox\nARG CACHEBUST\nRUN apt-get install -y make\nRUN git clone https://example.com/x.git\n"},
		{"version ARG used through an ENV", "VolatileArgEarly", "FROM busybox\nARG VERSION\nENV V=$VERSION\nRUN make\nRUN echo $V > /v\n",
			"2 VolatileArgEarly: ARG VERSION changes from build to build and reaches the step on line 4: 1 step that does not use it re-runs",
			"FROM busybox\nARG VERSION\nENV V=$VERSION\nRUN echo $V > /v\nLABEL v=$V\n"},
		{"download removed later", "FileRemovedInLaterLayer", "FROM busybox\nWORKDIR /tmp\nRUN wget https://example.com/big.tgz\nRUN tar xzf big.tgz && rm big.tgz\n",
			"3 FileRemovedInLaterLayer: /tmp/big.tgz added by RUN on line 3 is removed on line 4 in a later layer: its bytes stay in the image",
			"FROM busybox\nWORKDIR /tmp\nRUN wget https://example.com/big.tgz && tar xzf big.tgz && rm big.tgz\n"},
		{"copied file removed later", "FileRemovedInLaterLayer", "FROM busybox\nCOPY blob.bin /opt/\nRUN cat /opt/blob.bin > /dev/null\nRUN rm -f /opt/blob.bin\n",
			"2 FileRemovedInLaterLayer: /opt/blob.bin added by COPY on line 2 is removed on line 4 in a later layer",
			"FROM busybox AS fetch\nCOPY blob.bin /opt/\nRUN rm -f /opt/other.bin\nFROM busybox\nCOPY --from=fetch /opt/ /opt/\n"},
		{"directory under a removed one", "FileRemovedInLaterLayer", "FROM busybox\nRUN curl -fsSL -o /tmp/cache/x.zip https://example.com/x.zip\nRUN rm -rf /tmp/*\n",
			"2 FileRemovedInLaterLayer: /tmp/cache/x.zip added by RUN on line 2 is removed on line 3", "FROM busybox\nRUN curl -o /x.zip https://example.com/x.zip\nRUN rm -rf /tmp/*\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions(t, c.fires)
			opts.BuildArgs = buildArgs[c.name]
			got, err := lint(t, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !hasPrefix(got, c.want) {
				t.Errorf("want %q among:\n%s", c.want, strings.Join(got, "\n"))
			}
			opts = baseOptions(t, c.quiet)
			opts.BuildArgs = buildArgs[c.name]
			got, err = lint(t, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range got {
				if strings.Contains(g, " "+c.rule+": ") {
					t.Errorf("quiet twin warns: %s", g)
				}
			}
		})
	}
}

func hasPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// CopyIgnoredFile needs .dockerignore; like BuildKit, not when it has
// exceptions (!pattern), and not for COPY --from.
func TestLintCopyIgnoredFile(t *testing.T) {
	pm := func(patterns ...string) *patternmatcher.PatternMatcher {
		m, err := patternmatcher.New(patterns)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	src := "FROM busybox AS a\nFROM busybox\nCOPY secret.txt /\nADD logs/today.txt /\nCOPY --from=a secret.txt /x\nCOPY app.txt /\n"
	opts := baseOptions(t, src)
	opts.Ignore = pm("secret.txt", "logs")
	got, err := lint(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`3 CopyIgnoredFile: Attempting to Copy file "secret.txt" that is excluded by .dockerignore`,
		`4 CopyIgnoredFile: Attempting to Add file "logs/today.txt" that is excluded by .dockerignore`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	opts.Ignore = pm("secret.txt", "!keep.txt")
	if got, _ := lint(t, opts); len(got) != 0 {
		t.Errorf("with an exception pattern: %v", got)
	}
}

// InvalidBaseImagePlatform: a stored base image for another platform.
func TestLintInvalidBaseImagePlatform(t *testing.T) {
	img := fakeImages["busybox"]
	img.Architecture = "arm64"
	fakeImages["busybox-arm64"] = img
	defer delete(fakeImages, "busybox-arm64")
	got, err := lint(t, baseOptions(t, "FROM busybox-arm64\nFROM busybox\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `1 InvalidBaseImagePlatform: Base image busybox-arm64 was pulled with platform "linux/arm64", expected "linux/amd64" for current build`
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// check=error=true turns any warning into the compile's failure, at the
// first warning's line; BUILDKIT_DOCKERFILE_CHECK replaces the directive;
// a bad one is an error naming it.
func TestLintErrorAndOverride(t *testing.T) {
	src := "# check=error=true\nFROM busybox\nMAINTAINER me\nCMD echo hi\n"
	_, err := lint(t, baseOptions(t, src))
	var le *dockerfile.LintError
	var fe *dockerfile.Error
	if !errors.As(err, &le) || !errors.As(err, &fe) || fe.Line != 3 ||
		err.Error() != "Dockerfile:3: lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated" {
		t.Errorf("error = %v", err)
	}
	opts := baseOptions(t, src)
	opts.BuildArgs = map[string]string{dockerfile.CheckArg: "skip=MaintainerDeprecated"}
	got, err := lint(t, opts)
	if err != nil || len(got) != 1 || !strings.Contains(got[0], "JSONArgsRecommended") {
		t.Errorf("with %s: %v %v", dockerfile.CheckArg, got, err)
	}
	opts.BuildArgs = map[string]string{dockerfile.CheckArg: "bogus"}
	if _, err := lint(t, opts); err == nil || !strings.Contains(err.Error(), dockerfile.CheckArg) {
		t.Errorf("a bad %s: %v", dockerfile.CheckArg, err)
	}
	_, err = lint(t, baseOptions(t, "# check=error=true\nFROM busybox\nCMD [\"sh\"]\n"))
	if err != nil {
		t.Errorf("error=true without a warning: %v", err)
	}
}

// Compiled for a build (one target), only the target's stages are
// dispatched, so only their instructions warn, but the FROM rules see
// every stage, as in BuildKit.
func TestLintBuildSeesTargetStages(t *testing.T) {
	src := "FROM busybox AS unused\nCMD echo x\nFROM --platform=$TARGETPLATFORM busybox AS other\nFROM busybox\nCMD [\"sh\"]\n"
	opts := baseOptions(t, src)
	var got []string
	opts.Lint = func(w dockerfile.Warning) { got = append(got, w.Rule) }
	if _, err := dockerfile.Compile(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "RedundantTargetPlatform" {
		t.Errorf("build warnings %v, want RedundantTargetPlatform only", got)
	}
	all, _ := lint(t, baseOptions(t, src))
	if len(all) != 2 {
		t.Errorf("check warnings %v, want JSONArgsRecommended too", all)
	}
}

var reGoldenWarning = regexp.MustCompile(`(?m)^WARNING: (\S+)(?: - \S+)?\n(.*)\n(\S+):(\d+)\n`)

// The warnings of testdata/lint/<case> are BuildKit's (buildkit.txt,
// written by `make golden-lint` from BuildKit's own check): same rules,
// lines and messages, in the same order.
func TestLintMatchesBuildKitGoldens(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "lint", "*", "Dockerfile"))
	if err != nil || len(dirs) == 0 {
		t.Fatal("no testdata/lint cases", err)
	}
	for _, df := range dirs {
		dir := filepath.Dir(df)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			golden, err := os.ReadFile(filepath.Join(dir, "buildkit.txt"))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, m := range reGoldenWarning.FindAllStringSubmatch(string(golden), -1) {
				want = append(want, m[4]+" "+m[1]+": "+m[2])
			}
			if strings.Count(string(golden), "\nWARNING: ") != len(want) {
				t.Fatalf("buildkit.txt: could not read every warning")
			}
			src, err := os.ReadFile(df)
			if err != nil {
				t.Fatal(err)
			}
			opts := baseOptions(t, string(src))
			if opts.Context, err = contenthash.NewHasher(dir, t.TempDir(), nil); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, ".dockerignore")); err == nil {
				patterns, _ := ignorefile.ReadAll(bytes.NewReader(b))
				if opts.Ignore, err = patternmatcher.New(patterns); err != nil {
					t.Fatal(err)
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, "build-args")); err == nil {
				opts.BuildArgs = map[string]string{}
				for _, kv := range strings.Fields(string(b)) {
					k, v, _ := strings.Cut(kv, "=")
					opts.BuildArgs[k] = v
				}
			}
			got, err := lint(t, opts)
			var le *dockerfile.LintError
			if err != nil && !errors.As(err, &le) {
				t.Fatal(err)
			}
			got = withoutKilnRules(got)
			sortByLine(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("kiln:\n%s\nBuildKit:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// withoutKilnRules drops the warnings of kiln's own rules ("LINE Rule:
// message"), which BuildKit does not have: TestLintRules checks them.
func withoutKilnRules(got []string) []string {
	var out []string
	for _, g := range got {
		_, rest, _ := strings.Cut(g, " ")
		rule, _, _ := strings.Cut(rest, ":")
		switch rule {
		case dockerfile.RuleContextCopiedBeforeInstall.Name, dockerfile.RuleVolatileArgEarly.Name, dockerfile.RuleFileRemovedInLaterLayer.Name:
			continue
		}
		out = append(out, g)
	}
	return out
}

// sortByLine orders "LINE …" strings by line, keeping ties in order, as
// BuildKit's check prints them.
func sortByLine(s []string) {
	n := func(x string) int { i, _ := strconv.Atoi(strings.SplitN(x, " ", 2)[0]); return i }
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && n(s[j]) < n(s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
