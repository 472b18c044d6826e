# syntax=docker/dockerfile:1
# The `quarry` binary on Debian bookworm: `docker build -t quarry .`
# Used by docker-compose.yml for the scheduler and the workers.

# Build on the same Debian release as the runtime image so that the binary's
# glibc and libzmq match.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds;
# the binary is copied out because the target mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p quarry-cli \
    && cp target/release/quarry /usr/local/bin/quarry

FROM debian:bookworm-slim
# libzmq5 brings libsodium for CURVE; ca-certificates for https object stores.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/quarry --create-home quarry \
    && mkdir /cache \
    && chown quarry:quarry /cache
COPY --from=build /usr/local/bin/quarry /usr/local/bin/quarry
USER quarry
WORKDIR /var/lib/quarry
# 8786: ZeroMQ control plane; 8787: HTTP dashboard and /metrics.
EXPOSE 8786 8787
VOLUME ["/cache"]
ENTRYPOINT ["quarry"]
CMD ["--help"]
