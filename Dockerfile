# The contextiq binary and the local embedding model, on Debian. Build: docker build -t contextiq .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin contextiq \
    && apt-get update && apt-get install -y --no-install-recommends python3-pip \
    && EMBEDDING_MODEL_PATH=/models/all-MiniLM-L6-v2 ./scripts/fetch-model.sh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/contextiq --create-home contextiq
COPY --from=build /src/target/release/contextiq /usr/local/bin/contextiq
COPY --from=build /models /models
USER contextiq
WORKDIR /var/lib/contextiq
ENV CONTEXTIQ_BIND=0.0.0.0:8000 \
    CONTEXTIQ_DATA_DIR=/var/lib/contextiq/data \
    EMBEDDING_MODEL_PATH=/models/all-MiniLM-L6-v2 \
    LOG_FORMAT=json
EXPOSE 8000
ENTRYPOINT ["contextiq"]
CMD ["serve"]
