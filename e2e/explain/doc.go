// Package explain holds the end-to-end tests of kiln build --explain,
// kiln explain and kiln builds diff: real builds on a busybox base, each
// changing one thing (a file, a build arg, the base image, a file's mode,
// --no-cache, a pruned record, a secret) and checking what kiln names.
package explain
