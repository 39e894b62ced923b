package seeder

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/seeder/seederpb"
	"github.com/eagle-p2p/eagle/storage"
)

// Client asks seeders for metainfo. It implements p2p.MetaInfoSource. It is
// safe for concurrent use.
type Client struct {
	addrs []string
	conns []*grpc.ClientConn
	stubs map[string]seederpb.MetaInfoServiceClient
	log   *slog.Logger
}

var _ p2p.MetaInfoSource = (*Client)(nil)

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

type clientOptions struct {
	logger   *slog.Logger
	dialOpts []grpc.DialOption
}

// WithLogger sets the Client's logger. Default slog.Default().
func WithLogger(l *slog.Logger) ClientOption {
	return func(o *clientOptions) { o.logger = l }
}

// WithCredentials makes every seeder connection mutual TLS with the
// cluster's credentials (see package mtls). Nil credentials — what
// mtls.Load returns for an explicit insecure config — keep plaintext.
func WithCredentials(creds *mtls.Credentials) ClientOption {
	return func(o *clientOptions) {
		if creds != nil {
			o.dialOpts = append(o.dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
		}
	}
}

// WithDialOptions adds options to every seeder connection, after the
// default insecure transport credentials, which a
// grpc.WithTransportCredentials option here (or WithCredentials) replaces.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// NewClient returns a Client for the seeders at addrs ("host:port", or any
// gRPC target). It opens one gRPC connection per seeder, lazily: grpc
// connects on first use and reconnects after failures.
func NewClient(addrs []string, opts ...ClientOption) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("seeder: no seeder addresses")
	}
	o := clientOptions{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, o.dialOpts...)
	c := &Client{stubs: make(map[string]seederpb.MetaInfoServiceClient, len(addrs)), log: o.logger}
	for _, a := range addrs {
		if a == "" {
			c.Close()
			return nil, errors.New("seeder: empty seeder address")
		}
		if _, dup := c.stubs[a]; dup {
			c.Close()
			return nil, fmt.Errorf("seeder: seeder address %q listed twice", a)
		}
		conn, err := grpc.NewClient(a, dialOpts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("seeder: connection to %q: %w", a, err)
		}
		c.addrs = append(c.addrs, a)
		c.conns = append(c.conns, conn)
		c.stubs[a] = seederpb.NewMetaInfoServiceClient(conn)
	}
	return c, nil
}

// Close closes the connections to all seeders.
func (c *Client) Close() error {
	var errs []error
	for _, conn := range c.conns {
		if err := conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.conns = nil
	return errors.Join(errs...)
}

// MetaInfo returns the verified-shape metainfo of ref's blob from the first
// seeder in Rank order that can answer, failing over to the next when a
// seeder is unreachable or fails internally. It waits as long as ctx allows:
// a cold blob takes as long as the seeder's origin fetch.
//
// Errors wrap blob.ErrNotFound when the origin has no such blob, are (or
// wrap) a *blob.OriginError when the origin refused the credentials in ref,
// wrap blob.ErrDigestMismatch when the origin's bytes did not match the
// digest, and otherwise wrap the seeder's gRPC status error.
func (c *Client) MetaInfo(ctx context.Context, ref blob.Ref) ([]byte, error) {
	if err := storage.ValidateDigest(ref.Digest); err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}
	req := &seederpb.GetMetaInfoRequest{
		Upstream:      ref.Upstream,
		Repository:    ref.Repository,
		Digest:        ref.Digest.String(),
		Authorization: ref.Authorization,
	}
	order := Rank(c.addrs, ref.Digest)
	var errs []error
	for _, addr := range order {
		resp, err := c.stubs[addr].GetMetaInfo(ctx, req)
		if err == nil {
			mi, err := checkResponse(ref.Digest, resp)
			if err == nil {
				return mi, nil
			}
			// A seeder that hands out a bad metainfo is faulty; another
			// one may do better.
			err = fmt.Errorf("seeder %s: %w", addr, err)
			c.log.WarnContext(ctx, "bad metainfo from seeder", "seeder", addr, "digest", ref.Digest, "error", err)
			errs = append(errs, err)
			continue
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("seeder %s: %s: %w", addr, ref.Digest, ctxErr)
		}
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unavailable, codes.Internal, codes.Aborted:
			c.log.DebugContext(ctx, "seeder failed; trying the next", "seeder", addr, "digest", ref.Digest, "error", err)
			errs = append(errs, fmt.Errorf("seeder %s: %w", addr, err))
			continue
		}
		return nil, convertError(addr, st, err)
	}
	return nil, fmt.Errorf("seeder: all %d seeders failed for %s: %w", len(order), ref.Digest, errors.Join(errs...))
}

// checkResponse returns the response's metainfo if it describes dgst in
// the shape Eagle builds and agrees with the reported size.
func checkResponse(dgst digest.Digest, resp *seederpb.GetMetaInfoResponse) ([]byte, error) {
	_, info, err := p2p.ParseMetaInfo(dgst, resp.GetMetainfo())
	if err != nil {
		return nil, err
	}
	if info.Length != resp.GetSize() {
		return nil, fmt.Errorf("%w: length %d, but the seeder reported size %d", p2p.ErrBadMetaInfo, info.Length, resp.GetSize())
	}
	return resp.GetMetainfo(), nil
}

// convertError turns a seeder's final answer into the p2p package's errors.
func convertError(addr string, st *status.Status, err error) error {
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("seeder %s: %w: %s", addr, blob.ErrNotFound, st.Message())
	case codes.DataLoss:
		return fmt.Errorf("seeder %s: %w: %s", addr, blob.ErrDigestMismatch, st.Message())
	case codes.DeadlineExceeded:
		// The seeder ran out of the deadline propagated from the caller's
		// context (the client sets none of its own), a moment before the
		// caller's own timer fired.
		return fmt.Errorf("seeder %s: %w: %s", addr, context.DeadlineExceeded, st.Message())
	case codes.Canceled:
		return fmt.Errorf("seeder %s: %w: %s", addr, context.Canceled, st.Message())
	}
	if oe := originError(st); oe != nil {
		return fmt.Errorf("seeder %s: %w", addr, oe)
	}
	return fmt.Errorf("seeder %s: %w", addr, err)
}

// originError extracts an origin refusal from a status's ErrorInfo, or
// returns nil if the status carries none.
func originError(st *status.Status) *blob.OriginError {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain || info.GetReason() != ReasonOriginRefused {
			continue
		}
		md := info.GetMetadata()
		code, err := strconv.Atoi(md[MetadataOriginStatus])
		if err != nil || code < 100 || code > 999 {
			continue
		}
		return &blob.OriginError{
			StatusCode:      code,
			WWWAuthenticate: md[MetadataWWWAuthenticate],
			RetryAfter:      md[MetadataRetryAfter],
		}
	}
	return nil
}

// Rank orders seeder addresses for a blob by rendezvous (highest random
// weight) hashing: each address scores the first 8 bytes of
// sha256(addr NUL digest), highest first, ties broken by address. Every
// client with the same seeder list picks the same first seeder for a blob,
// so the origin sees one fetch per blob; removing a seeder moves only the
// blobs it ranked first, to their second choice. addrs is not modified.
func Rank(addrs []string, dgst digest.Digest) []string {
	type scored struct {
		addr  string
		score uint64
	}
	s := make([]scored, len(addrs))
	for i, a := range addrs {
		sum := sha256.Sum256([]byte(a + "\x00" + dgst.String()))
		s[i] = scored{addr: a, score: binary.BigEndian.Uint64(sum[:8])}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.addr, b.addr)
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.addr
	}
	return out
}
