package seeder

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/metricset"
	"github.com/eagle-p2p/eagle/storage"
)

// Label values of eagle_seeder_origin_fetches_total.
const (
	fetchSuccess        = "success"
	fetchNotFound       = "not_found"
	fetchRefused        = "refused"
	fetchDigestMismatch = "digest_mismatch"
	fetchUnavailable    = "unavailable"
	fetchCanceled       = "canceled"
	fetchError          = "error"
)

// serverMetrics holds a Server's collectors. Its zero value (no registerer)
// counts nothing.
type serverMetrics struct {
	set      *metricset.Set // nil: counting nothing
	fetches  *prometheus.CounterVec
	requests *prometheus.CounterVec
}

// newServerMetrics registers s's metrics on reg; a nil reg gives metrics
// that count nothing.
func newServerMetrics(reg prometheus.Registerer, s *Server) (*serverMetrics, error) {
	m := &serverMetrics{}
	if reg == nil {
		return m, nil
	}
	m.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_seeder_origin_fetches_total",
		Help: "Blob fetches from origins that ended, by result: success, not_found, refused (a 4xx for the client's credentials), digest_mismatch, unavailable (network error or 5xx), canceled, error.",
	}, []string{"result"})
	for _, r := range []string{fetchSuccess, fetchNotFound, fetchRefused, fetchDigestMismatch, fetchUnavailable, fetchCanceled, fetchError} {
		m.fetches.WithLabelValues(r)
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_seeder_requests_total",
		Help: "GetMetaInfo calls answered, by gRPC status code (OK, NotFound, Unauthenticated, ...).",
	}, []string{"code"})
	set, err := metricset.Register(reg,
		m.fetches,
		m.requests,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eagle_seeder_origin_bytes_total",
			Help: "Blob bytes received from origins.",
		}, func() float64 { return float64(s.originBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eagle_seeder_streamed_bytes_total",
			Help: "Blob bytes streamed to agents as they arrived from origins (cut-through, StreamBlob).",
		}, func() float64 { return float64(s.streamedBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eagle_seeder_metainfo_cache_hits_total",
			Help: "GetMetaInfo calls answered from the in-memory metainfo cache.",
		}, func() float64 { return float64(s.cacheHits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eagle_seeder_store_rebuilds_total",
			Help: "Metainfos rebuilt by re-hashing a blob already in the store (after a restart or a cache eviction), instead of fetching it again.",
		}, func() float64 { return float64(s.storeRebuilds.Load()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("seeder: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// unregister removes the collectors, so that a new Server can register on
// the same registry.
func (m *serverMetrics) unregister() {
	m.set.Unregister()
}

// request counts one GetMetaInfo call answered with err (a gRPC status
// error, or nil).
func (m *serverMetrics) request(err error) {
	if m.set == nil {
		return
	}
	m.requests.WithLabelValues(status.Code(err).String()).Inc()
}

// originFetched counts one origin fetch that ended with err.
func (m *serverMetrics) originFetched(err error) {
	if m.set == nil {
		return
	}
	var refusal *blob.OriginError
	result := fetchError
	switch {
	case err == nil:
		result = fetchSuccess
	case errors.Is(err, errOriginNotFound):
		result = fetchNotFound
	case errors.As(err, &refusal):
		result = fetchRefused
	case errors.Is(err, storage.ErrDigestMismatch):
		result = fetchDigestMismatch
	case errors.Is(err, errOriginUnavailable):
		result = fetchUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = fetchCanceled
	}
	m.fetches.WithLabelValues(result).Inc()
}
