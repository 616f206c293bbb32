# syntax=docker/dockerfile:1
#
# mdmd container image.
#
#   docker build -t mdmd .
#   docker run -p 127.0.0.1:8080:8080 -v mdmd-data:/data \
#     -e MDMD_SECRET_KEY="$(openssl rand -base64 32)" mdmd
#
# Runtime image choice: gcr.io/distroless/static-debian12:nonroot.
# mdmd is a pure-Go, statically linked binary (CGO_ENABLED=0; SQLite via the
# pure-Go modernc driver), so it needs nothing from the OS except CA
# certificates, tzdata and /etc/passwd, which distroless/static provides.
# No shell or package manager means a much smaller attack surface, and the
# :nonroot tag runs as uid/gid 65532 by default.
#
# Consequence: there is no curl/wget/shell in the runtime image, so this
# Dockerfile has no HEALTHCHECK and docker-compose.yml defines none for the
# mdmd service. Probe the HTTP endpoint from outside the container instead.

ARG GO_VERSION=1.26

############################ build stage ############################
FROM golang:${GO_VERSION}-bookworm AS build

WORKDIR /src

# Download modules first so this layer stays cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mdmd ./cmd/mdmd

# Empty data directory; copied into the runtime image owned by nonroot
# (distroless has no shell, so it cannot be created with mkdir there).
RUN mkdir -p /out/data

############################ runtime stage ##########################
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/mdmd /mdmd
COPY --from=build --chown=65532:65532 /out/data /data

ENV MDMD_LISTEN=0.0.0.0:8080 \
    MDMD_DATA_DIR=/data

# Already the default of the :nonroot tag; stated explicitly for clarity.
USER nonroot:nonroot

VOLUME ["/data"]
EXPOSE 8080

ENTRYPOINT ["/mdmd"]
CMD ["serve"]
