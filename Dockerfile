# syntax=docker/dockerfile:1
# weir: edge reverse proxy. Multi-stage build of one static binary, run as a non-root user.
#
#   docker build -t weir .
#   docker run --rm -p 8080:8080 -p 8443:8443 -p 8443:8443/udp -p 9901:9901 weir
#
# The image runs /etc/weir/weir.toml (config/container.toml in the repo: every listener on
# 0.0.0.0, the site config/www, a development certificate made at build time that nothing
# trusts). Mount your own config directory over /etc/weir for real use.

# ---- builder: static-pie glibc binary -----------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# +crt-static with an explicit --target links the binary statically while build scripts and
# proc-macros stay dynamic (without --target the flag would hit them too and the build fails).
# $(uname -m) is x86_64 on amd64 hosts, i.e. --target x86_64-unknown-linux-gnu.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target "$target" \
 && install -D -m 0755 "target/$target/release/weir" /out/usr/local/bin/weir \
 && { ldd /out/usr/local/bin/weir 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; } \
 && /out/usr/local/bin/weir version
# Development certificate for the TLS listener, made fresh for every image (never trusted).
RUN certs/gen-dev-certs.sh /out/etc/weir/certs && rm /out/etc/weir/certs/ca-key.pem

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl for the HEALTHCHECK; ca-certificates for upstreams with `tls = true` (system roots).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 weir \
 && useradd --system --uid 10001 --gid weir --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin weir
COPY --from=builder /out/usr/local/bin/weir /usr/local/bin/weir
COPY config/container.toml /etc/weir/weir.toml
COPY config/www /etc/weir/www
COPY --from=builder --chown=10001:10001 /out/etc/weir/certs /etc/weir/certs
LABEL org.opencontainers.image.title="weir" \
      org.opencontainers.image.description="Edge reverse proxy and traffic router" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /etc/weir
USER 10001:10001
# 8080 HTTP (redirects to TLS), 8443 TLS for HTTP/1.1 + HTTP/2, 8443/udp HTTP/3, 9901 admin
EXPOSE 8080 8443 8443/udp 9901
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9901/healthz || exit 1
# SIGTERM: /readyz turns 503, listeners stop accepting, in-flight requests finish, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["run", "-c", "/etc/weir/weir.toml"]
