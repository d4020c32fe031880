// Package registry is kiln's one way to a registry: Pull brings images
// into the store (pull.go), Push sends stored images out (push.go), and
// every path that talks to a registry — pull, push and the build cache's
// type=registry import and export — shares one Config (registry.go): the
// plain-HTTP policy (only loopback hosts and --insecure-registry),
// extra CAs, credentials from the docker config and readable errors.
package registry
