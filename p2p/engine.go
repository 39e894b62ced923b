package p2p

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/storage"
)

// Role says which kind of peer an Engine is; it is visible to other peers
// in the peer ID prefix so that they can account bytes by source.
type Role int

const (
	// RoleAgent is a node that fetches blobs for its runtime.
	RoleAgent Role = iota
	// RoleSeeder is a seeder that only seeds blobs it fetched from origin.
	RoleSeeder
)

// Config configures an Engine.
type Config struct {
	// ListenAddr is the peer-wire listen address. Default ":6881".
	ListenAddr string
	// DataDir holds partial downloads. Required.
	DataDir string
	// Trackers are the announce URLs. At least one is required.
	Trackers []string
	// Role is the kind of peer. Default RoleAgent.
	Role Role
	// Logger receives the engine's logs. Default slog.Default().
	Logger *slog.Logger
}

// Stats counts the bytes an Engine received, by the kind of peer they came from.
type Stats struct {
	// BytesFromSeeders is useful piece data received from seeders.
	BytesFromSeeders int64
	// BytesFromAgents is useful piece data received from other agents.
	BytesFromAgents int64
	// BytesUploaded is piece data sent to other peers.
	BytesUploaded int64
}

// Engine is one peer. Create it with New and stop it with Close.
type Engine struct {
	cfg   Config
	store storage.Store
	src   MetaInfoSource
}

var errTODO = errors.New("p2p: not implemented yet")

// New starts an Engine that keeps blobs in store and asks src for metainfo
// (src may be nil for a seeder, which only seeds what it is given).
func New(cfg Config, store storage.Store, src MetaInfoSource) (*Engine, error) {
	return nil, errTODO
}

// Fetch returns the blob ref names, from the local store or through the swarm.
func (e *Engine) Fetch(ctx context.Context, ref BlobRef) (Blob, error) { return nil, errTODO }

// Stat returns the blob's size, from the local store or from its metainfo.
func (e *Engine) Stat(ctx context.Context, ref BlobRef) (int64, error) { return 0, errTODO }

// Seed starts seeding a blob that is already committed in the store, with
// the metainfo built for it, and announces it to the trackers.
func (e *Engine) Seed(ctx context.Context, dgst digest.Digest, metaInfo []byte) error {
	return errTODO
}

// Addr is the address the engine accepts peer connections on.
func (e *Engine) Addr() net.Addr { return nil }

// Stats returns byte counters since the engine started.
func (e *Engine) Stats() Stats { return Stats{} }

// Close stops the engine: it leaves every swarm and stops all goroutines.
func (e *Engine) Close() error { return errTODO }
