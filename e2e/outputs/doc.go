// Package outputs tests kiln build's -o outputs end to end: type=local
// and type=tar hold the final rootfs, type=oci compresses each layer once
// and deterministically, type=docker loads and runs in docker, the
// metadata file matches kiln inspect, and a failed build or a bad -o
// leaves no output.
package outputs
