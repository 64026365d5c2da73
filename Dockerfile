# syntax=docker/dockerfile:1
#
# The Gust image: one statically linked `gust` binary (x86_64-unknown-linux-musl) on distroless
# static, running as the non-root user 65532. The same image runs the scheduler, the API server
# and the processing steps' init container (`gust artifacts fetch`, which copies this static
# binary into the step's pod, so it must not depend on any libc). See docs/deploy.md.
#
#   docker build --platform linux/amd64 -t registry.example.com/gust:0.1.0 \
#     --build-arg GUST_GIT_VERSION=$(git rev-parse --short HEAD) .
#
# x86_64 only: on an arm64 machine keep --platform linux/amd64 (the build then runs emulated).
#
# Why musl works for every dependency:
# - rustls with aws-lc-rs: aws-lc-sys builds AWS-LC with the `cc` crate (no CMake, no Go) and
#   ships pre-generated bindings for x86_64-unknown-linux-musl (no bindgen, no clang). It
#   includes <linux/random.h>, so the kernel headers (`linux-headers`) must be installed: on
#   Alpine gcc targets musl natively and finds them, which a musl-gcc wrapper on Debian does not.
# - sqlx's SQLite is libsqlite3-sys with the bundled amalgamation, compiled by the same gcc.
# - ring (jsonwebtoken's crypto, in gust-server) is C and assembly built by `cc` too.
# Rust links musl targets statically by default (crt-static), so the result needs no loader.
#
# Alternative final stage `--target gust-bash`: Debian slim with bash and tini, for installations
# that run `bash` tasks in the scheduler's container (distroless has no shell, so a bash task
# fails there); pod and processing tasks need only the default image.

# The workspace needs Rust 1.89 or later (edition 2024); CI builds with the newest stable.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
RUN apk add --no-cache musl-dev gcc linux-headers
WORKDIR /src
COPY . .
# What `GET /api/v2/version` reports as git_version (read at compile time).
ARG GUST_GIT_VERSION=""
ENV GUST_GIT_VERSION=${GUST_GIT_VERSION}
# The target folder is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gust --target x86_64-unknown-linux-musl \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/gust /out/gust \
 && ! readelf -l /out/gust | grep -q 'Requesting program interpreter'
# The folders Gust writes to, owned by the runtime user (volumes are usually mounted over them).
RUN mkdir -p /out/home/dags /out/home/logs && chown -R 65532:65532 /out/home

# Debian slim, for bash tasks run by the scheduler itself (`docker build --target gust-bash`).
FROM debian:bookworm-slim AS gust-bash
RUN apt-get update && apt-get install -y --no-install-recommends bash ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 65532 nonroot && useradd -u 65532 -g 65532 -d /home/nonroot -m nonroot
COPY --from=build /out/gust /usr/local/bin/gust
COPY --from=build --chown=65532:65532 /out/home /var/lib/gust
ENV GUST_HOME=/var/lib/gust
USER 65532:65532
WORKDIR /var/lib/gust
EXPOSE 8080
# tini reaps the orphans that bash tasks leave behind (gust is not an init process).
ENTRYPOINT ["/usr/bin/tini", "--", "gust"]
CMD ["--help"]

# The default image: distroless static (CA certificates, /etc/passwd with nonroot, no shell).
FROM gcr.io/distroless/static-debian12:nonroot AS gust
COPY --from=build /out/gust /usr/local/bin/gust
COPY --from=build --chown=65532:65532 /out/home /var/lib/gust
# gust.toml and the generated keys (when not configured) live in GUST_HOME.
ENV GUST_HOME=/var/lib/gust
USER 65532:65532
WORKDIR /var/lib/gust
EXPOSE 8080
ENTRYPOINT ["gust"]
CMD ["--help"]
