# syntax=docker/dockerfile:1
# The worker image: docker build -t higress-route-worker:0.1.0 .
# Runs as the distroless "nonroot" user (65532); ENTRYPOINT is the binary, CMD its `run` subcommand.

FROM rust:1-bookworm AS build
# rdkafka builds its bundled librdkafka: a C toolchain and make (in this image), pkg-config and zlib;
# cmake for rdkafka's cmake-build feature.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin higress-route-worker \
 && install -D target/release/higress-route-worker /out/usr/local/bin/higress-route-worker
# librdkafka links zlib dynamically; copy it beside the distroless image's own libraries.
RUN triplet="$(gcc -dumpmachine)" \
 && install -D "$(readlink -f "/usr/lib/$triplet/libz.so.1")" "/out/usr/lib/$triplet/libz.so.1"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/higress-route-worker"]
CMD ["run"]
