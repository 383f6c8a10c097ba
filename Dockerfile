# syntax=docker/dockerfile:1
# The mc image: `mc-gateway` and `mc-mirror` in one small runtime image.
#
#   docker build -t ghcr.io/mc-project/mc:0.1.0 .
#   mc multicluster install --registry ghcr.io/mc-project --tag 0.1.0 | kubectl apply -f -
#
# The manifests rendered by `mc multicluster install` / `link` (and the Helm chart) run
# `mc-gateway serve …` and `mc-mirror …` from `<registry>/mc:<tag>`, as UID/GID 2103 with a
# read-only root filesystem.

# --- build --------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mc-gateway -p mc-mirror --bins \
 && mkdir -p /out \
 && cp target/release/mc-gateway target/release/mc-mirror /out/ \
 && strip /out/mc-gateway /out/mc-mirror

# --- runtime ------------------------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mc-gateway /out/mc-mirror /usr/local/bin/
USER 2103:2103
# 4143: gateway mTLS listener; 4191: gateway admin (/ready, /live, /metrics);
# 9999: mirror controller admin.
EXPOSE 4143 4191 9999
ENTRYPOINT []
CMD ["mc-gateway", "--help"]
