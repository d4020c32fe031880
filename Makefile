# kiln: make demo (try it), make test (the whole suite, as CI runs it).
GO ?= go
KILN := $(CURDIR)/bin/kiln
DEMO := $(CURDIR)/.demo

.PHONY: all kiln deps demo test unit fuzz bench golden golden-lint clean

all: kiln

kiln:
	$(GO) build -o $(KILN) ./cmd/kiln

deps:
	bash scripts/install-deps.sh

# The demo uses kiln's default store (/var/lib/kiln as root, or KILN_ROOT).
demo: deps kiln
	@mkdir -p $(DEMO)
	bash scripts/busybox-rootfs.sh $(DEMO)/busybox-rootfs.tar
	$(KILN) import $(DEMO)/busybox-rootfs.tar busybox:latest
	$(KILN) build --progress plain -t hello:1.0 examples/hello
	$(KILN) run --rm hello:1.0
	$(KILN) build --progress plain --explain --build-arg VERSION=1.1 -t hello:1.1 examples/hello
	$(KILN) images
	$(KILN) history hello:1.0
	$(KILN) builds
	$(KILN) explain
	$(KILN) layers hello:1.1
	$(KILN) diff hello:1.0 hello:1.1
	$(KILN) save -o $(DEMO)/hello.tar hello:1.0
	tar -tvf $(DEMO)/hello.tar

# Needs root, runc, overlayfs and dockerd (scripts/install-deps.sh installs them).
test: deps
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) fuzz FUZZTIME=10s

# Bounded fuzzing of the parsers of untrusted input (a failure leaves its
# input in the package's testdata/fuzz/ for go test to replay).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzCompile -fuzztime=$(FUZZTIME) ./frontend/dockerfile
	$(GO) test -run='^$$' -fuzz=FuzzApply -fuzztime=$(FUZZTIME) ./store/layer
	$(GO) test -run='^$$' -fuzz=FuzzLoad -fuzztime=$(FUZZTIME) ./transport/archive

unit:
	$(GO) test -count=1 -short ./...

# Rebuild the conformance goldens (testdata/conformance/*/buildkit.json) with
# BuildKit: the standalone one at kiln's buildkit version, else docker's.
# ORACLE=auto|standalone|docker|both, CASE=NAME (scripts/make-golden.sh).
golden: deps
	sh scripts/make-golden.sh

# Rebuild the lint goldens (frontend/dockerfile/testdata/lint/*/buildkit.txt)
# with the standalone BuildKit's check (scripts/make-golden-lint.sh).
golden-lint: deps
	sh scripts/make-golden-lint.sh

bench: deps kiln
	bash benchmarks/run.sh

clean:
	rm -rf bin $(DEMO)
