# syntax=docker/dockerfile:1
# Spate container image: `docker build -t spate .`
#   build stage: cargo on rust:1-bookworm (clang/libclang-dev for RocksDB's bindgen; protoc is vendored)
#   run stage:   debian:bookworm-slim, non-root user 10001, data under /var/lib/spate
# The Helm chart (helm/spate) runs /usr/local/bin/spate through /bin/sh and uses curl for the
# zone initContainer and the preStop drain hook, so both stay in the runtime image.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Release build of the `spate` binary (package spate-node). The caches keep the registry and the
# RocksDB C++ objects between builds; the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p spate-node --bin spate \
 && install -D -m 0755 target/release/spate /out/spate

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="spate" \
      org.opencontainers.image.description="Replicated, zone-aware server wire-compatible with Amazon Kinesis Data Streams" \
      org.opencontainers.image.source="https://github.com/spate-streams/spate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 spate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/spate --no-create-home --shell /usr/sbin/nologin spate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/spate \
 && install -d -m 0755 /etc/spate
COPY --from=build /out/spate /usr/local/bin/spate
USER 10001:10001
WORKDIR /var/lib/spate
VOLUME ["/var/lib/spate"]
# Kinesis API, TLS API, peer gRPC, admin (/health, /ready, /metrics).
EXPOSE 4567 4443 7400 9400
# tini forwards SIGTERM to the node (graceful shutdown) and reaps children.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/usr/local/bin/spate", "server", "--config", "/etc/spate/spate.toml"]
