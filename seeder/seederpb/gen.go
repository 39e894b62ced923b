// Package seederpb holds the protobuf and gRPC code generated from
// seeder.proto: the MetaInfoService that p2p clients use to get a blob's
// torrent metainfo from a seeder.
//
// Regenerate after editing seeder.proto, from this directory, with Debian's
// protoc (apt package protobuf-compiler) and the plugin versions pinned here:
//
//	go generate ./seeder/seederpb
//
// which runs (go generate spells each $ as ${DOLLAR}):
//
//	GOBIN=$(mktemp -d) && \
//	  go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 && \
//	  go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2 && \
//	  protoc -I . \
//	    --plugin=protoc-gen-go=$GOBIN/protoc-gen-go \
//	    --plugin=protoc-gen-go-grpc=$GOBIN/protoc-gen-go-grpc \
//	    --go_out=. --go_opt=paths=source_relative \
//	    --go-grpc_out=. --go-grpc_opt=paths=source_relative \
//	    seeder.proto
package seederpb

//go:generate sh -c "export GOBIN=$(mktemp -d) && go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 && go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2 && protoc -I . --plugin=protoc-gen-go=${DOLLAR}GOBIN/protoc-gen-go --plugin=protoc-gen-go-grpc=${DOLLAR}GOBIN/protoc-gen-go-grpc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative seeder.proto && rm -r ${DOLLAR}GOBIN"
