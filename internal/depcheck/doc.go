// Package depcheck has no code, only the test that keeps kiln's packages
// layered as docs/architecture.md draws them: a package may import only
// the layers below its own.
package depcheck
