# prewarm's image: prewarmd (the service, the ENTRYPOINT), prewarmctl (the CLI, handy with
# `kubectl exec`), and /prewarm-true, the static helper that each prewarm Job's init container copies
# into its pod (`/prewarm-true install /prewarm/true`), so deploy/deployment.yaml's
# PREWARM_HELPER_IMAGE names this same image.
#
#   docker build -t ghcr.io/prewarm/prewarm:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/prewarm/prewarm:0.1.0 --push .
#
# Publish it multi-arch: the init container of every prewarm Job runs this image on whatever node it
# targets, so a cluster with arm64 nodes needs an arm64 /prewarm-true (prewarm-true.c has the system
# calls for x86_64 and aarch64; each platform's stage compiles natively).
#
# Why the runtime stage is debian:12-slim and not scratch or distroless/static: prewarm-true is fully
# static (no libc at all), but prewarmd links libcurl, libmicrohttpd, gnutls, OpenSSL, jansson, libyaml,
# SQLite, hiredis and protobuf-c. Debian ships no usable static libcurl (its .a needs static nghttp2,
# libidn2, libpsl, librtmp, libssh2, Kerberos and LDAP, several of which have no static archive), so a
# static prewarmd
# would mean building that stack from source. distroless/base-debian12 has glibc and OpenSSL but none
# of the others, and copying .so files across stages by hand misses transitive dependencies and
# security updates. So the runtime is Debian's slim image with exactly the runtime packages of the
# build-time -dev packages (same Debian release, same ABI), installed with --no-install-recommends.
# Both stages are Debian 12, like the machines the project is built and tested on.

# ---- build ----
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make pkg-config libc6-dev libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev \
        libyaml-dev libsqlite3-dev libssl-dev libgnutls28-dev libhiredis-dev libprotobuf-c-dev \
        protobuf-c-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the three programs are built from (no build/ directory from the host, no tests, no sim/).
COPY Makefile ./
COPY src/ src/
RUN make -j"$(nproc)" build/release/bin/prewarmd build/release/bin/prewarmctl \
        build/release/bin/prewarm-true \
 && strip build/release/bin/prewarmd build/release/bin/prewarmctl \
 && ./build/release/bin/prewarm-true \
 && ./build/release/bin/prewarmd --help >/dev/null

# ---- runtime ----
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libcurl4 libmicrohttpd12 libgnutls30 libssl3 libjansson4 libyaml-0-2 libsqlite3-0 \
        libhiredis0.14 libprotobuf-c1 \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'nonroot:x:65532:' >>/etc/group \
 && mkdir -p /home/nonroot /var/lib/prewarm \
 && chown 65532:65532 /home/nonroot /var/lib/prewarm
COPY --from=build /src/build/release/bin/prewarm-true /prewarm-true
COPY --from=build /src/build/release/bin/prewarmd /usr/local/bin/prewarmd
COPY --from=build /src/build/release/bin/prewarmctl /usr/local/bin/prewarmctl
# The store directory is a volume in deploy/deployment.yaml; the root filesystem stays read-only.
VOLUME ["/var/lib/prewarm"]
USER 65532:65532
EXPOSE 8080
ENV PREWARM_LISTEN=0.0.0.0:8080 \
    PREWARM_STORE=sqlite:/var/lib/prewarm/prewarm.db
ENTRYPOINT ["/usr/local/bin/prewarmd"]
