# Build: the release binaries. Run: a slim image with just them.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY openapi ./openapi
RUN cargo build --release --locked --bin em-gateway --bin em-sim

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 emgw
COPY --from=build /src/target/release/em-gateway /src/target/release/em-sim /usr/local/bin/
USER emgw
ENV EMGW_LISTEN=0.0.0.0:8080 EMGW_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["em-gateway"]
CMD ["serve"]
