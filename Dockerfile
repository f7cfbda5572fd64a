# One image for all commands (/bank, /store, /txaudit): they share the contract package and most
# dependencies, so one build, one scan, one tag for Flux image automation to follow; the Deployment picks
# the command with `args`. Final stage: distroless static, non-root (UID 65532), no shell.
# The builder is go.mod's toolchain (go1.27.3: the standard library's fixes that make vuln requires); the
# official image sets GOTOOLCHAIN=local, so this is exactly the Go that builds the binaries.
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY src ./src
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/ ./src/cmd/bank ./src/cmd/store ./src/cmd/txaudit

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bank /out/store /out/txaudit /
USER 65532:65532
EXPOSE 8080
CMD ["/bank", "serve"]
