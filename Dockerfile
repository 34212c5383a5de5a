# The Sluice server as a small static image, with its streams in a volume:
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t sluice .
#   docker run -p 8080:8080 -v sluice-data:/data sluice
#
# deploy/deploy_test.go parses this file and runs the builder's go build itself, since
# the tests have no Docker engine to build it with.

FROM golang:1.26 AS build
WORKDIR /src
# The modules first, so that a change of the code alone does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version that sluice version prints: the image is built without .git, so the Go
# toolchain has no commit to record.
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice
# The data directory, owned by the image's user (distroless's nonroot, 65532), so that
# a new volume mounted there is writable by it.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

# No shell, no libc, no package manager: the binary is static.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /sluice
COPY --from=build --chown=65532:65532 /out/data /data
ENV SLUICE_ADDR=:8080 SLUICE_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
# sluice health asks http://127.0.0.1:$PORT/health, the port of SLUICE_ADDR: the image
# has no curl to do it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/sluice", "health"]
# SIGTERM is a graceful shutdown within --shutdown-grace (25s); docker stop waits 10s
# unless told otherwise (docker stop -t 30, or stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/sluice"]
CMD ["serve"]
