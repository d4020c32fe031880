package dockerfile

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// kiln's own rules: what the cache and the layers make of a Dockerfile.
// Each is checked per stage, from the instructions as written (their
// variables expanded where dispatch expands them), after the stage has
// been dispatched; none has a URL.
var (
	// RuleContextCopiedBeforeInstall: a COPY of the whole context (or of
	// a directory of it) before a dependency install in the same stage.
	// Every edit of any copied file changes the COPY's key, so the
	// install after it runs again.
	RuleContextCopiedBeforeInstall = linter.LinterRule[func(copy string, copyLine int, install string, installLine int) string]{
		Name:        "ContextCopiedBeforeInstall",
		Description: "Copying the whole build context (or a directory of it) before a dependency install re-runs the install on every edit",
		Format: func(copy string, copyLine int, install string, installLine int) string {
			return fmt.Sprintf("%s on line %d comes before %q on line %d: any change to a copied file re-runs the install; copy the dependency manifests first, install, then copy the rest",
				copy, copyLine, install, installLine)
		},
	}
	// RuleVolatileArgEarly: an ARG whose value changes from build to
	// build (a commit, a date, a build number) in scope of layer-making
	// steps that do not use it. A RUN sees every ARG in scope, so a new
	// value misses the cache there and at every step after it.
	RuleVolatileArgEarly = linter.LinterRule[func(kind, name string, reachLine, unused int) string]{
		Name:        "VolatileArgEarly",
		Description: "A value that changes with every build (a version, commit or date), in scope early in a stage, invalidates the cache of every later step",
		Format: func(kind, name string, reachLine, unused int) string {
			steps := "steps that do not use it re-run"
			if unused == 1 {
				steps = "step that does not use it re-runs"
			}
			return fmt.Sprintf("%s %s changes from build to build and reaches the step on line %d: %d %s whenever it changes; declare and use it as late as possible", kind, name, reachLine, unused, steps)
		},
	}
	// RuleFileRemovedInLaterLayer: a file added by one instruction and
	// deleted by a later RUN. The deletion is a whiteout in a new layer;
	// the bytes stay in the earlier one.
	RuleFileRemovedInLaterLayer = linter.LinterRule[func(p, how string, addLine, rmLine int) string]{
		Name:        "FileRemovedInLaterLayer",
		Description: "A file added in one layer and removed in a later one still takes its space in the image",
		Format: func(p, how string, addLine, rmLine int) string {
			return fmt.Sprintf("%s added by %s on line %d is removed on line %d in a later layer: its bytes stay in the image; remove it in the instruction that creates it, or copy the result from another stage",
				p, how, addLine, rmLine)
		},
	}
)

// cacheLint watches one stage's instructions as they are dispatched.
type cacheLint struct {
	root string // of the build context, to tell a directory source; "" unknown

	broadCopies []broadCopy
	vars        []volatileVar
	added       []addedPath
	removed     []removal
}

type broadCopy struct {
	name string // COPY or ADD
	src  string
	loc  []parser.Range
	done bool
}

type volatileVar struct {
	kind, name string
	// uses are the names whose reference uses it: its own, and those of
	// the ENVs made from it
	uses   []string
	loc    []parser.Range
	reach  int // line of the first step it invalidates, 0 none yet
	unused int // layer-making steps from reach on (reach too) that do not use it
	lint   *linter.Linter
}

// usedBy reports whether an instruction's source refers to v.
func (v *volatileVar) usedBy(raw string) bool {
	for _, n := range v.uses {
		if references(raw, n) {
			return true
		}
	}
	return false
}

type addedPath struct {
	path, how string
	loc       []parser.Range
}

type removal struct {
	added addedPath
	loc   []parser.Range
	lint  *linter.Linter
}

// observe records one dispatched instruction; wd is the working
// directory it ran in.
func (cl *cacheLint) observe(cmd instructions.Command, wd string, l *linter.Linter) {
	raw := cmdSource(cmd)
	layer := false
	switch cmd := cmd.(type) {
	case *instructions.ArgCommand:
		for _, kv := range cmd.Args {
			if volatileName(kv.Key) {
				cl.vars = append(cl.vars, volatileVar{kind: "ARG", name: kv.Key, uses: []string{kv.Key}, loc: cmd.Location(), lint: l})
			}
		}
	case *instructions.EnvCommand:
		for _, kv := range cmd.Env {
			// the ENV and the ARGs it is made from change together: a
			// step that uses one uses the others
			env := volatileVar{kind: "ENV", name: kv.Key, uses: []string{kv.Key}, loc: cmd.Location(), lint: l}
			for i := range cl.vars {
				if v := &cl.vars[i]; v.kind == "ARG" && references(raw, v.name) {
					v.uses = append(v.uses, kv.Key)
					env.uses = append(env.uses, v.name)
				}
			}
			if len(env.uses) > 1 {
				cl.vars = append(cl.vars, env)
			}
		}
	case *instructions.CopyCommand:
		layer = true
		if len(cmd.SourceContents) == 0 {
			if cmd.From == "" {
				cl.noteBroad("COPY", cmd.SourcePaths, cmd.Location())
			}
			cl.noteAdded(cmd.SourcePaths, cmd.DestPath, wd, "COPY", cmd.Location())
		}
	case *instructions.AddCommand:
		layer = true
		if len(cmd.SourceContents) == 0 {
			cl.noteBroad("ADD", cmd.SourcePaths, cmd.Location())
			cl.noteAdded(cmd.SourcePaths, cmd.DestPath, wd, "ADD", cmd.Location())
		}
	case *instructions.RunCommand:
		layer = true
		script := strings.Join(cmd.CmdLine, " ")
		for _, f := range cmd.Files {
			script += "\n" + f.Data
		}
		if install := installCommand(script); install != "" {
			for i := range cl.broadCopies {
				bc := &cl.broadCopies[i]
				if !bc.done {
					bc.done = true
					l.Run(&RuleContextCopiedBeforeInstall, bc.loc, RuleContextCopiedBeforeInstall.Format(bc.name+" "+bc.src, line(bc.loc), install, line(cmd.Location())))
				}
			}
		}
		cl.noteRemoved(script, wd, cmd.Location(), l)
		cl.noteDownloads(script, wd, cmd.Location())
	}
	if !layer {
		return
	}
	_, isRun := cmd.(*instructions.RunCommand)
	for i := range cl.vars {
		v := &cl.vars[i]
		used := v.usedBy(raw)
		if v.reach == 0 && (isRun || used) {
			v.reach = line(cmd.Location())
		}
		if v.reach != 0 && !used {
			v.unused++ // the reach step too: a RUN that does not use it re-runs all the same
		}
	}
}

// finish reports what the whole stage shows.
func (cl *cacheLint) finish() {
	for _, v := range cl.vars {
		if v.unused > 0 {
			v.lint.Run(&RuleVolatileArgEarly, v.loc, RuleVolatileArgEarly.Format(v.kind, v.name, v.reach, v.unused))
		}
	}
	for _, r := range cl.removed {
		loc := append(append([]parser.Range(nil), r.added.loc...), r.loc...)
		r.lint.Run(&RuleFileRemovedInLaterLayer, loc, RuleFileRemovedInLaterLayer.Format(r.added.path, r.added.how, line(r.added.loc), line(r.loc)))
	}
}

func (cl *cacheLint) noteBroad(name string, srcs []string, loc []parser.Range) {
	for _, src := range srcs {
		if isURL(src) {
			continue
		}
		clean := path.Clean("/" + filepath.ToSlash(src))
		broad := clean == "/" || clean == "/*" || clean == "/**" || strings.HasSuffix(src, "/")
		if !broad && cl.root != "" && !strings.ContainsAny(src, "*?[") {
			fi, err := os.Stat(filepath.Join(cl.root, clean))
			broad = err == nil && fi.IsDir()
		}
		if broad {
			cl.broadCopies = append(cl.broadCopies, broadCopy{name: name, src: src, loc: loc})
			return
		}
	}
}

// noteAdded records the paths a COPY or ADD writes: the destination
// itself, or each source's name in it when it is a directory.
func (cl *cacheLint) noteAdded(srcs []string, dest, wd, how string, loc []parser.Range) {
	d := destPath(wd, dest)
	dir := strings.HasSuffix(d, "/") || len(srcs) > 1
	for _, src := range srcs {
		if how == "ADD" && !isURL(src) && isArchiveName(src) {
			continue // unpacked: its files land, not it
		}
		p := strings.TrimSuffix(d, "/")
		if dir {
			base := path.Base(filepath.ToSlash(src))
			if isURL(src) {
				base = path.Base(strings.SplitN(src, "?", 2)[0])
			}
			if base == "." || base == "/" || strings.ContainsAny(base, "*?[") {
				continue // the directory's contents: no one path
			}
			p = path.Join(d, base)
		}
		if p == "" || p == "/" {
			continue
		}
		cl.added = append(cl.added, addedPath{path: p, how: how, loc: loc})
	}
}

var (
	reCurlOut = regexp.MustCompile(`\bcurl\b[^;&|]*?\s(?:-o|--output)\s+(\S+)`)
	reWgetOut = regexp.MustCompile(`\bwget\b[^;&|]*?\s(?:-O|--output-document)\s+(\S+)`)
	reWget    = regexp.MustCompile(`\bwget\s+(?:-\S+\s+)*(https?://\S+)`)
)

// noteDownloads records the files a RUN downloads with curl -o or wget.
func (cl *cacheLint) noteDownloads(script, wd string, loc []parser.Range) {
	for _, seg := range shellSegments(script) {
		var p string
		if m := reCurlOut.FindStringSubmatch(seg); m != nil {
			p = m[1]
		} else if m := reWgetOut.FindStringSubmatch(seg); m != nil {
			p = m[1]
		} else if m := reWget.FindStringSubmatch(seg); m != nil && !strings.Contains(seg, " -P") {
			p = path.Base(strings.SplitN(m[1], "?", 2)[0])
		}
		p = unquote(p)
		if p == "" || p == "-" || strings.ContainsAny(p, "$*") {
			continue
		}
		cl.added = append(cl.added, addedPath{path: absPath(wd, p), how: "RUN", loc: loc})
	}
}

// noteRemoved matches the `rm` commands of a RUN against the paths
// earlier instructions added: the same path, a directory holding it, or
// a path inside it.
func (cl *cacheLint) noteRemoved(script, wd string, loc []parser.Range, l *linter.Linter) {
	for _, seg := range shellSegments(script) {
		f := strings.Fields(seg)
		if len(f) == 0 || f[0] != "rm" {
			continue
		}
		for _, arg := range f[1:] {
			if strings.HasPrefix(arg, "-") {
				continue
			}
			arg = unquote(arg)
			if arg == "" || strings.Contains(arg, "$") {
				continue
			}
			gone := absPath(wd, arg)
			for i := 0; i < len(cl.added); i++ {
				a := cl.added[i]
				if sameLine(a.loc, loc) || !covers(gone, a.path) {
					continue
				}
				cl.removed = append(cl.removed, removal{added: a, loc: loc, lint: l})
				cl.added = append(cl.added[:i], cl.added[i+1:]...)
				i--
			}
		}
	}
}

// covers says whether removing gone (a path, maybe a glob) takes away
// bytes of added.
func covers(gone, added string) bool {
	if gone == added || strings.HasPrefix(added, gone+"/") || strings.HasPrefix(gone, added+"/") {
		return true
	}
	if strings.ContainsAny(gone, "*?[") {
		for p := added; p != "/" && p != "."; p = path.Dir(p) {
			if ok, _ := path.Match(gone, p); ok {
				return true
			}
		}
	}
	return false
}

var installCommands = regexp.MustCompile(`\b(npm (?:install|ci|i)\b|yarn(?: install)?(?:\s+--?[\w-]+)*\s*$|pnpm (?:install|i)\b|pip3? install\b|python3? -m pip install\b|poetry install\b|pipenv install\b|go mod download\b|apt-get (?:-\S+ )*install\b|apt (?:-\S+ )*install\b|apk (?:-\S+ )*add\b|(?:dnf|yum|microdnf) (?:-\S+ )*install\b|bundle install\b|cargo (?:build|fetch)\b|composer install\b|gem install\b)`)

// installCommand names the dependency install a RUN's script runs, "" if
// none.
func installCommand(script string) string {
	for _, seg := range shellSegments(script) {
		seg = strings.Join(strings.Fields(seg), " ")
		if m := installCommands.FindString(seg); m != "" {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// volatileName says whether an ARG's name says it changes with every
// build: a commit, a date or time, a build number, a version of what is
// being built.
func volatileName(name string) bool {
	n := strings.ToUpper(name)
	switch n {
	case "VERSION", "APP_VERSION", "BUILD_VERSION", "RELEASE", "BUILD_ID", "BUILD_NUMBER", "BUILD_NUM",
		"GIT_REF", "GIT_TAG", "GIT_BRANCH", "BRANCH", "CI_PIPELINE_ID", "RUN_ID":
		return true
	}
	words := strings.Split(n, "_")
	qualified := false // SHA, REV and TIME say it only beside GIT, BUILD or COMMIT (not KUBECTL_SHA)
	for _, w := range words {
		switch w {
		case "COMMIT", "REVISION", "DATE", "TIMESTAMP", "BUILDTIME", "BUILDDATE", "NONCE": // not CACHEBUST: invalidating is its job
			return true
		case "GIT", "GITHUB", "BUILD":
			qualified = true
		}
	}
	for _, w := range words {
		if (w == "SHA" || w == "REV" || w == "TIME") && (qualified || len(words) == 1) {
			return true
		}
	}
	return false
}

var reShellSep = regexp.MustCompile(`&&|\|\||;|\||\n`)

// shellSegments splits a shell script into its simple commands, roughly.
func shellSegments(script string) []string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	return reShellSep.Split(script, -1)
}

// references says whether an instruction's source uses $name or ${name}.
func references(src, name string) bool {
	re := regexp.MustCompile(`\$(?:` + regexp.QuoteMeta(name) + `\b|\{` + regexp.QuoteMeta(name) + `\b)`)
	return re.MatchString(src)
}

// cmdSource is an instruction as written.
func cmdSource(cmd instructions.Command) string {
	if s, ok := cmd.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}

func absPath(wd, p string) string {
	if !path.IsAbs(p) {
		p = path.Join("/", wd, p)
	}
	return path.Clean(p)
}

func unquote(s string) string { return strings.Trim(s, `"'`) }

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

func sameLine(a, b []parser.Range) bool { return line(a) == line(b) }

// isArchiveName says whether ADD would unpack a local file of this name.
func isArchiveName(p string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}
