// Package analyze answers "why is this image big?" and "what changed
// between these two images?" from the layer tars the store already holds.
//
// Layers walks an image's layers bottom first and reports, per layer, the
// history line that made it, its size, its largest files and directories,
// and the bytes it carries that a later layer deletes (a whiteout or an
// opaque directory) or overwrites: wasted bytes, with the line that added
// them and the line that removed them. Diff compares two images' final
// filesystems file by file, as docker diff does (A/C/D), with size, mode,
// owner and content digest changes.
//
// Both read only tar headers, seeking over file contents (a layer's Open
// returns a seekable file), so they cost about one pass over the headers
// of every layer. Diff hashes contents only of the regular files that
// differ in where they come from: a path whose final entry comes from the
// same layer in both images is the same file.
package analyze
