# The three servers' images, from one build:
#   docker build --target admission-webhook     -t ghcr.io/globalmesh/admission-webhook:0.1.0 .
#   docker build --target dns-shim              -t ghcr.io/globalmesh/dns-shim:0.1.0 .
#   docker build --target globalmesh-controller -t ghcr.io/globalmesh/globalmesh-controller:0.1.0 .
# The runtime is distroless (glibc, CA certificates, no shell) and runs as uid 65532, as
# deploy/ expects. The filter is not an image: see deploy/wasm-filter.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p admission-webhook -p dns-shim -p controller \
 && mkdir -p /out \
 && cp target/release/admission-webhook target/release/dns-shim target/release/globalmesh-controller /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS admission-webhook
COPY --from=build /out/admission-webhook /usr/local/bin/admission-webhook
USER 65532:65532
EXPOSE 8443 15080
ENTRYPOINT ["/usr/local/bin/admission-webhook"]
CMD ["serve", "--kubernetes"]

FROM gcr.io/distroless/cc-debian12:nonroot AS dns-shim
COPY --from=build /out/dns-shim /usr/local/bin/dns-shim
USER 65532:65532
EXPOSE 53/udp 53/tcp 15054
ENTRYPOINT ["/usr/local/bin/dns-shim"]
CMD ["--kubernetes"]

FROM gcr.io/distroless/cc-debian12:nonroot AS globalmesh-controller
COPY --from=build /out/globalmesh-controller /usr/local/bin/globalmesh-controller
USER 65532:65532
EXPOSE 15090
ENTRYPOINT ["/usr/local/bin/globalmesh-controller"]
