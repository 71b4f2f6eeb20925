# syntax=docker/dockerfile:1
# Multi-stage build: compile the sidecar and the example plugins, ship a small runtime image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --release -p switchyard \
 && cargo build --release --target wasm32-wasip2 -p read-preference -p write-pinning -p degraded-mode \
 && mkdir -p /out/plugins \
 && cp target/release/switchyard /out/ \
 && cp target/wasm32-wasip2/release/read_preference.wasm \
       target/wasm32-wasip2/release/write_pinning.wasm \
       target/wasm32-wasip2/release/degraded_mode.wasm /out/plugins/

FROM debian:bookworm-slim
# System roots for verifying HTTPS regions; nothing else is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home switchyard
COPY --from=build /out/switchyard /usr/local/bin/switchyard
COPY --from=build /out/plugins /usr/local/lib/switchyard/plugins
ENV SWITCHYARD_PLUGIN_DIR=/usr/local/lib/switchyard/plugins
USER 10001
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run", "--config", "/etc/switchyard/switchyard.toml"]
