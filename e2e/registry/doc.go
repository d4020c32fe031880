// Package registry tests kiln against a real registry (Debian's
// docker-registry on 127.0.0.1), end to end: pull (TLS, credentials,
// multi-arch indexes, --pull, interrupted and retried), push (gzip, zstd,
// levels, blob mounts, interrupted and retried; docker pulls what kiln
// pushed), build --push and -o type=registry, and a build cache exported
// by one machine and imported by another.
package registry
