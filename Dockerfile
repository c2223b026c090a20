# syntax=docker/dockerfile:1
# bucketq container image: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t bucketq:dev .
#
# `bucketq version` in the image prints VERSION and REVISION (the build
# context has no .git, so Go cannot stamp the revision itself).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is reused while go.mod and go.sum do not change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.linkVersion=${VERSION} -X main.linkRevision=${REVISION}" \
      -o /out/bucketq ./cmd/bucketq

# distroless static: no shell, no package manager, CA certificates and
# tzdata included; the :nonroot tag runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bucketq /usr/local/bin/bucketq
USER 65532:65532
# 8888: HTTP events, /metrics, /healthz, /readyz; 4317/4318: OTLP gRPC/HTTP.
EXPOSE 8888 4317 4318
ENTRYPOINT ["/usr/local/bin/bucketq"]
CMD ["help"]
