package proxy

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/metricset"
)

// Label values of eagle_proxy_blob_bytes_total.
const (
	sourceLocal  = "local"  // the node's store
	sourceSwarm  = "swarm"  // read while the swarm download goes on
	sourceOrigin = "origin" // fetched from the origin by the node (fallback: origin)
)

// handlerMetrics holds a Handler's collectors. Its zero value (no
// registerer) counts nothing.
type handlerMetrics struct {
	set        *metricset.Set // nil: counting nothing
	requests   *prometheus.CounterVec
	blobBytes  *prometheus.CounterVec
	fromLocal  prometheus.Counter
	fromSwarm  prometheus.Counter
	fromOrigin prometheus.Counter
}

// newHandlerMetrics registers the Handler's metrics on reg; a nil reg gives
// metrics that count nothing.
func newHandlerMetrics(reg prometheus.Registerer) (*handlerMetrics, error) {
	m := &handlerMetrics{}
	if reg == nil {
		return m, nil
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_proxy_requests_total",
		Help: "Registry API requests served, by route (ping, blob, upload, manifest, tags, referrers, catalog, other), method and HTTP status code (\"aborted\" for a blob stream cut short).",
	}, []string{"route", "method", "code"})
	m.blobBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_proxy_blob_bytes_total",
		Help: "Blob bytes sent to clients, by source: local (the node's store), swarm (while downloading through the swarm) or origin (fetched from the origin by the node itself, fallback: origin).",
	}, []string{"source"})
	m.fromLocal = m.blobBytes.WithLabelValues(sourceLocal)
	m.fromSwarm = m.blobBytes.WithLabelValues(sourceSwarm)
	m.fromOrigin = m.blobBytes.WithLabelValues(sourceOrigin)
	set, err := metricset.Register(reg, m.requests, m.blobBytes)
	if err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// unregister removes the collectors, so that a new Handler can register on
// the same registry.
func (m *handlerMetrics) unregister() {
	m.set.Unregister()
}

// request counts one served request of the given route kind.
func (m *handlerMetrics) request(kind RouteKind, method string, status int, aborted bool) {
	if m.set == nil {
		return
	}
	code := "aborted"
	if !aborted {
		code = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(string(kind), methodLabel(method), code).Inc()
}

// blobServed counts n blob bytes sent to a client from source.
func (m *handlerMetrics) blobServed(source string, n int64) {
	if m.set == nil || n <= 0 {
		return
	}
	switch source {
	case sourceSwarm:
		m.fromSwarm.Add(float64(n))
	case sourceOrigin:
		m.fromOrigin.Add(float64(n))
	default:
		m.fromLocal.Add(float64(n))
	}
}

// sourceOf is the blob_bytes source label of a blob from the BlobSource:
// what its Source method says (the p2p engine's readers have one), local
// otherwise.
func sourceOf(b blob.Reader) string {
	if s, ok := b.(interface{ Source() string }); ok {
		switch src := s.Source(); src {
		case sourceSwarm, sourceOrigin:
			return src
		}
	}
	return sourceLocal
}

// methodLabel bounds the method label to the methods of the registry API.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
