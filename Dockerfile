# syntax=docker/dockerfile:1
# d1vault container image.
#
#   docker build -t d1vault .
#   docker run -d --name d1vault \
#     -v ./d1vault.toml:/etc/d1vault/d1vault.toml:ro -v d1vault-state:/var/lib/d1vault d1vault
#
# Two stages: a Debian 12 (bookworm) Rust toolchain builds the binary; the final image is distroless/cc on the
# same Debian release (glibc, libgcc, CA certificates, tzdata; no shell, no package manager) plus that one
# binary. A static musl build would work too, but glibc keeps the default allocator fast for the compression
# path and needs no cross toolchain; both the builder and the runtime are bookworm, so the glibc versions match.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and the target directory between builds (BuildKit); the binary is
# copied out of the cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin d1vault \
 && install -D -m 0755 target/release/d1vault /out/usr/local/bin/d1vault \
 && install -d -m 0700 /out/var/lib/d1vault /out/etc/d1vault

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/usr/local/bin/d1vault /usr/local/bin/d1vault
# The state directory must exist owned by the runtime user, so that a fresh named volume inherits it.
COPY --from=build --chown=10001:10001 /out/var/lib/d1vault /var/lib/d1vault
# Mount the configuration here read-only; secrets belong in files referenced by *_file keys
# (for example Docker/compose secrets under /run/secrets), not in the image or the environment.
ENV D1VAULT_CONFIG=/etc/d1vault/d1vault.toml
VOLUME ["/var/lib/d1vault"]
WORKDIR /var/lib/d1vault
# A fixed numeric non-root UID/GID, so volume ownership is predictable across rebuilds and hosts.
USER 10001:10001
# /healthz and /metrics (daemon.listen). Inside a container set `listen = "0.0.0.0:9180"` to scrape it from
# outside; the HEALTHCHECK below works with the default 127.0.0.1 too.
EXPOSE 9180
# `d1vault healthcheck` GETs http://<daemon.listen>/healthz and exits 0 on 200: the image needs no curl.
# /healthz turns 503 when a database's newest backup is stale, so "healthy" means "backups are fresh".
HEALTHCHECK --interval=1m --timeout=10s --start-period=2m --retries=3 CMD ["d1vault", "healthcheck"]
# No tini: d1vault runs as PID 1 itself. It installs its own SIGTERM/SIGINT/SIGHUP handlers (PID 1 gets no
# default signal actions), lets running backups finish for daemon.shutdown_grace, and spawns no child
# processes that would need reaping. Give `docker stop` a longer timeout than shutdown_grace
# (e.g. `docker stop -t 360`, or compose `stop_grace_period: 6m`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["d1vault"]
CMD ["run"]
