# syntax=docker/dockerfile:1
#
# The Order Processor image: a multi-stage build, as the seed describes, with both binaries of
# this crate (`order-processor`, the entrypoint, and `storage-service`, the reference Storage
# Service, which Kubernetes runs with `command: ["/usr/local/bin/storage-service"]`).
#
#   docker build -t order-processor:latest .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

# ---- Build stage ---------------------------------------------------------------------------
# The official Rust image, pinned to the toolchain the crate declares (`rust-version = "1.95"`).
# Its `slim` variant still has gcc and libc6-dev, which the bundled SQLite (rusqlite `bundled`)
# needs to compile. Bookworm matches the glibc of the runtime image below (distroless
# debian12), so the dynamically linked binaries find the glibc they were linked against.
FROM rust:1.95.0-slim-bookworm AS builder

WORKDIR /app

# The whole build context, filtered by .dockerignore: Cargo.toml and Cargo.lock, build.rs,
# src/, openapi/ (build.rs generates the servers and clients from it at build time) and xtask/
# (a member of the workspace: cargo refuses to load the workspace without it).
COPY . .

# Dependency caching: BuildKit cache mounts rather than the "stub sources" trick.
# - The stub trick (copy the manifests and empty src/main.rs, src/lib.rs,
#   src/bin/storage-service.rs, xtask/src/main.rs, build and then copy the real sources) has to
#   mirror the crate's layout by hand, throws every compiled dependency away as soon as
#   Cargo.lock changes, and has an mtime trap: a stub newer than the real file makes cargo keep
#   the stub binary.
# - Cache mounts keep cargo's registry and target/ between builds on the same builder, so
#   cargo's own fingerprints decide what to rebuild: an edit in src/ recompiles only this
#   crate, a changed Cargo.lock only the changed dependencies.
# The cost: the cache lives on the builder, not in the image layers, so a CI builder that
#   starts empty every time builds from scratch unless it keeps its cache mounts.
# target/ is a cache mount and therefore not part of the layer: the binaries are copied out of
# it in the same RUN. `--locked` builds exactly the versions in Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked --bin order-processor --bin storage-service \
    && mkdir -p /out/bin /out/data \
    && cp target/release/order-processor target/release/storage-service /out/bin/

# ---- Runtime stage -------------------------------------------------------------------------
# Distroless "cc": glibc, libgcc_s and CA certificates, and nothing else: no shell, no package
# manager, so there is nothing in the image for an attacker to use. The binaries need no more
# (no OpenSSL: reqwest is built without TLS; SQLite is compiled in). The `nonroot` tag already
# defaults to an unprivileged user; USER below pins the uid the Kubernetes manifests use.
# No HEALTHCHECK: it would need a shell or curl, which distroless lacks; Kubernetes probes
# `/health/live` and `/health/ready` instead.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/bin/order-processor /out/bin/storage-service /usr/local/bin/

# The data directory for the embedded SQLite store (order processor without
# STORAGE_SERVICE_URL) and for the storage service. It must be writable by user 1000: copied
# from the build stage with that owner, since distroless has no shell to `mkdir` and `chown`.
# In Kubernetes the root filesystem is read-only and /data is a mounted volume (emptyDir or a
# PersistentVolumeClaim); under plain `docker run` the VOLUME keeps the data out of the
# container's writable layer.
COPY --from=builder --chown=1000:1000 /out/data /data
VOLUME ["/data"]

# Same defaults as the code, made explicit for the container: listen on 8082 and keep data in
# /data. The storage service reads the same variables; its Deployment sets SERVER_PORT=8083.
ENV SERVER_PORT=8082 \
    DATA_DIR=/data

# Non-root, as user 1000: the uid the Kubernetes manifests name in `runAsUser` (a numeric
# USER lets `runAsNonRoot: true` verify it without an /etc/passwd entry).
USER 1000:1000

EXPOSE 8082

# Exec form: the service is PID 1 and receives SIGTERM itself, so it drains in-flight requests
# (up to 20 s) before it exits.
ENTRYPOINT ["/usr/local/bin/order-processor"]
