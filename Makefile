# Builds of sluice. The tests are `bash .ci/run` (or go test ./...); see README.md.
#
#   make            bin/sluice for this machine
#   make release    static binaries for Linux and macOS, amd64 and arm64, in dist/, with
#                   dist/SHA256SUMS (check them with: cd dist && sha256sum -c SHA256SUMS)

# The version that sluice version prints. The Go toolchain records the commit itself
# when it can (a clone with git); this is for builds from elsewhere, such as a tarball.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# Static (no cgo: no libc to match), without the paths of this machine, stripped.
BUILD := CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=$(VERSION)"

.PHONY: build release clean

build:
	$(BUILD) -o bin/sluice ./cmd/sluice

release:
	rm -rf dist
	mkdir -p dist
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "dist/sluice-$(VERSION)-$$os-$$arch"; \
		GOOS=$$os GOARCH=$$arch $(BUILD) -o dist/sluice-$(VERSION)-$$os-$$arch ./cmd/sluice; \
	done
	cd dist && sha256sum sluice-* > SHA256SUMS

clean:
	rm -rf bin dist
