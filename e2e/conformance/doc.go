// Package conformance is the Dockerfile conformance suite: every case in
// testdata/conformance is built by kiln and compared (final filesystem and
// config, testenv.Diff) with BuildKit's result for the same Dockerfile,
// recorded in the case's buildkit.json by `make golden`. See
// testdata/conformance/README.md for the layout of a case.
//
//	go test ./e2e/conformance -run TestConformance -v              # kiln vs the goldens
//	go test ./e2e/conformance -run TestConformance/copy-chmod -v   # one case
//	make golden                                                    # rebuild the goldens with BuildKit
package conformance
