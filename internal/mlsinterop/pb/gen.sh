#!/usr/bin/env bash
# Regenerates mls_client.pb.go and mls_client_grpc.pb.go from mls_client.proto.
#
# Requirements (the generated files are checked in, so only needed to regenerate):
#   apt-get install -y protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
#
# The upstream proto declares a go_package for the mls-implementations
# repository; it is overridden here with M flags so the .proto stays verbatim.
set -euo pipefail

cd "$(dirname "$0")"

GOBIN_DIR="$(go env GOBIN)"
if [ -z "$GOBIN_DIR" ]; then
	GOBIN_DIR="$(go env GOPATH)/bin"
fi
export PATH="$GOBIN_DIR:$PATH"

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "gen.sh: $tool not found in PATH" >&2
		exit 1
	fi
done

GO_PKG="mahfooz/internal/mlsinterop/pb;pb"

protoc \
	--proto_path=. \
	--go_out=. \
	--go_opt=paths=source_relative \
	--go_opt="Mmls_client.proto=${GO_PKG}" \
	--go-grpc_out=. \
	--go-grpc_opt=paths=source_relative \
	--go-grpc_opt="Mmls_client.proto=${GO_PKG}" \
	mls_client.proto

gofmt -l . | (! grep .) || { echo "gen.sh: generated code is not gofmt-clean" >&2; exit 1; }
