FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/trainlens /trainlens

FROM debian:bookworm-slim
RUN useradd --system --home /data trainlens && mkdir -p /data && chown trainlens /data
COPY --from=build /trainlens /usr/local/bin/trainlens
USER trainlens
WORKDIR /data
ENV TRAINLENS_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["trainlens"]
CMD ["serve"]
