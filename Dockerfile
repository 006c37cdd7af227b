# fintrail's production image: one binary, `fintrail serve` (the API) and `fintrail cdc run`
# (the CDC pipeline) on Cloud Run, configured by environment variables alone
# (docs/configuration.md). Built on every merge to main by the Cloud Build trigger in
# infra/modules/cloud_build and deployed by digest (infra/stack/settings: images.fintrail).
#
#   docker build -t fintrail .          # or: buildah build --isolation chroot -t fintrail .
#
# Two stages. `build`: the official Rust image compiles `fintrail` against DuckDB's official
# prebuilt library (the one ./dev installs: the same npm package, version and hashes).
# `runtime`: distroless (glibc, libstdc++, CA certificates; no shell, no package manager), the
# binary and libduckdb.so, run as a non-root user. No PostgreSQL binaries: in production
# fintrail talks to Cloud SQL and starts no cluster.
#
# Base images are pinned by digest (the tag is a comment for people). To move to a newer one:
#   crane digest rust:1.95.0-bookworm
#   crane digest gcr.io/distroless/cc-debian12:nonroot
# crates/cli/tests/image.rs checks this file (digests, stages, user, entrypoint, no PostgreSQL,
# the DuckDB pins equal to ./dev's) and builds the runtime stage with buildah.

ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${RUST_IMAGE} AS build

# DuckDB's official prebuilt library: the npm package ./dev fetches (DUCKDB_NPM_PKG there),
# taken from the registry's tarball and checked against ./dev's two hashes.
ARG DUCKDB_NPM_PKG=@duckdb/node-bindings-linux-x64@1.5.6-r.1
ARG DUCKDB_TGZ_URL=https://registry.npmjs.org/@duckdb/node-bindings-linux-x64/-/node-bindings-linux-x64-1.5.6-r.1.tgz
ARG DUCKDB_TGZ_SHA256=1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff
ARG DUCKDB_SO_SHA256=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
# The build links against it here and bakes this folder into the binary's run path
# (crates/cli/build.rs), the same folder as in the runtime stage.
ENV DUCKDB_LIB_DIR=/usr/local/lib/fintrail
RUN set -eu; \
    curl --fail --silent --show-error --location --retry 3 --output /tmp/duckdb.tgz "$DUCKDB_TGZ_URL"; \
    echo "$DUCKDB_TGZ_SHA256  /tmp/duckdb.tgz" | sha256sum --check --quiet -; \
    mkdir -p /tmp/duckdb "$DUCKDB_LIB_DIR"; \
    tar -xzf /tmp/duckdb.tgz -C /tmp/duckdb; \
    echo "$DUCKDB_SO_SHA256  /tmp/duckdb/package/libduckdb.so" | sha256sum --check --quiet -; \
    install -m 0644 /tmp/duckdb/package/libduckdb.so "$DUCKDB_LIB_DIR/libduckdb.so"; \
    rm -rf /tmp/duckdb /tmp/duckdb.tgz

WORKDIR /src
# The build context is the workspace sources only (.dockerignore lets in nothing else).
COPY . .
ENV CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
RUN set -eu; \
    cargo build --release --locked -p fintrail; \
    install -D -m 0755 target/release/fintrail /out/fintrail; \
    /out/fintrail --version

FROM ${RUNTIME_IMAGE} AS runtime

LABEL org.opencontainers.image.title="fintrail" \
      org.opencontainers.image.description="fintrail serve (API) and fintrail cdc run (CDC pipeline), configured by environment variables" \
      org.opencontainers.image.source="https://github.com/fintrail/fintrail" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /usr/local/lib/fintrail/libduckdb.so /usr/local/lib/fintrail/libduckdb.so
COPY --from=build /out/fintrail /usr/local/bin/fintrail

# The release binary finds libduckdb.so through its run path; this covers a binary built
# elsewhere (the image test puts the test build in).
ENV LD_LIBRARY_PATH=/usr/local/lib/fintrail \
    FINTRAIL_HOME=/tmp/fintrail \
    FINTRAIL_LOG_FORMAT=json

# distroless's `nonroot` (65532): no shell, no root, nothing writable but /tmp (FINTRAIL_HOME
# is scratch space there; on Cloud Run an in-memory file system).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fintrail"]
CMD ["serve"]
