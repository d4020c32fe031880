// Package build tests kiln build end to end, with the kiln binary on a
// private store: the result runs in kiln, docker, skopeo and umoci and
// matches BuildKit's; a failing build (a RUN, a Dockerfile error, Ctrl-C)
// exits 1 with one clear message and leaves nothing behind; a Dockerfile
// or a context tar comes from stdin.
package build
