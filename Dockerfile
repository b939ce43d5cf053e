# zoomkeeper's container image: the release binary on Debian bookworm-slim, run as
# an unprivileged user, with its data directory (SQLite database and master key) in
# the volume /data.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t zoomkeeper .
#   docker run -d --name zoomkeeper -p 8000:8000 -v zoomkeeper-data:/data \
#     -e ZOOMKEEPER_PUBLIC_URL=https://zoomkeeper.example.com zoomkeeper
#
# The cache mounts below need BuildKit (Docker's default builder since 23.0;
# podman and buildah understand them too). podman and buildah write OCI images by
# default, which drop HEALTHCHECK: build with `--format docker` to keep it.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The whole workspace, including .cargo/config.toml (it trims the embedded Swagger UI).
COPY . .
# The commit the binary is built from, for `zoomkeeper --version`. The build
# context has no .git, so it must be passed in: --build-arg GIT_COMMIT=….
ARG GIT_COMMIT=
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ZOOMKEEPER_BUILD_COMMIT="${GIT_COMMIT}" cargo build --release -p zoomkeeper --locked \
    && cp target/release/zoomkeeper /usr/local/bin/zoomkeeper

FROM debian:${DEBIAN_RELEASE}-slim
ARG GIT_COMMIT=
LABEL org.opencontainers.image.title="zoomkeeper" \
      org.opencontainers.image.description="A self-hosted Zoom OAuth vault and token broker for meeting bots." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

# curl runs the health check below (zoomkeeper has no probe subcommand).
# sqlite3 takes online backups of the SQLite database (README, "Operating zoomkeeper").
# ca-certificates: zoomkeeper's own TLS clients (Zoom, webhooks, PostgreSQL) carry
# Mozilla's root certificates built in and do not read the system store; the package
# is here for curl and for anyone debugging TLS from inside the container.
# Versions are not pinned so that a rebuild picks up Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl sqlite3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 zoomkeeper \
    && useradd --system --uid 10001 --gid zoomkeeper --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin zoomkeeper \
    && install -d -o zoomkeeper -g zoomkeeper -m 0700 /data

COPY --from=builder /usr/local/bin/zoomkeeper /usr/local/bin/zoomkeeper

# Every setting is ZOOMKEEPER_<NAME> in the environment (README, "Configuration").
# The master key file defaults to /data/master.key (generated on first start, mode
# 0600); back it up apart from the database: without it a backup cannot be opened.
ENV ZOOMKEEPER_DATA_DIR=/data \
    ZOOMKEEPER_LISTEN=0.0.0.0:8000

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# /readyz answers 200 when the database is reachable, 503 when it is not. The port is
# taken from ZOOMKEEPER_LISTEN when the container starts. A process with role
# `worker` serves no HTTP: run it with the health check disabled. (Shell form, so the
# variable is expanded: hadolint's DL3025 is about CMD and ENTRYPOINT.)
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null --max-time 4 "http://127.0.0.1:${ZOOMKEEPER_LISTEN##*:}/readyz" || exit 1

ENTRYPOINT ["zoomkeeper"]
CMD ["serve"]
