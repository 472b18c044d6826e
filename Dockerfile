# The `quarry` binary on Debian bookworm: `docker build -t quarry .`
# Used by docker-compose.yml for the scheduler, the workers and the example
# job. Plain Dockerfile instructions only (no cache mounts, no syntax
# directive), so the classic builder, docker-compose v1 and BuildKit all build
# it.

# Build on the same Debian release as the runtime image so that the binary's
# glibc and libzmq match.
FROM rust:1.95.0-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p quarry-cli \
    && cp target/release/quarry /usr/local/bin/quarry

FROM debian:12.9-slim
# libzmq5 brings libsodium for CURVE; ca-certificates for https object stores.
# /cache (worker shard caches) and /var/lib/quarry/journal (the scheduler's
# journal) belong to the quarry user, so named volumes mounted there start
# out writable by it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/quarry --create-home quarry \
    && mkdir -p /cache /var/lib/quarry/journal \
    && chown quarry:quarry /cache /var/lib/quarry/journal
COPY --from=build /usr/local/bin/quarry /usr/local/bin/quarry
USER quarry
WORKDIR /var/lib/quarry
# 8786: ZeroMQ control plane; 8787: HTTP dashboard and /metrics.
EXPOSE 8786 8787
VOLUME ["/cache"]
ENTRYPOINT ["quarry"]
CMD ["--help"]
