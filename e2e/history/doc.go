// Package history tests kiln's build history end to end, with real builds
// on a busybox base: kiln builds (ls, show) lists every build — completed,
// failed, interrupted, failed before solving — kiln logs reads a step's
// whole output back byte for byte, kiln df counts the journals and kiln
// prune and the build cache budget remove them and say so.
package history
