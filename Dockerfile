FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin atsso

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/atsso /usr/local/bin/atsso
ENV ATSSO_BIND=0.0.0.0:8080 ATSSO_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["atsso"]
CMD ["serve"]
