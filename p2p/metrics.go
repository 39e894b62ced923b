package p2p

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/internal/metricset"
)

// Where the bytes of a blob.Reader from the engine come from, as its
// Source method says: a caller such as the registry endpoint accounts the
// bytes it serves by them.
const (
	// SourceLocal: the node's store.
	SourceLocal = "local"
	// SourceSwarm: the swarm, while the download goes on.
	SourceSwarm = "swarm"
	// SourceOrigin: the origin itself (FetchOrigin).
	SourceOrigin = "origin"
)

// FromSwarm reports whether b, returned by Engine.Fetch, is being read
// while its download through the swarm goes on, rather than from the local
// store.
func FromSwarm(b blob.Reader) bool {
	_, ok := b.(*swarmBlob)
	return ok
}

// Label values of eagle_p2p_downloads_total.
const (
	downloadSuccess        = "success"
	downloadNotFound       = "not_found"
	downloadRefused        = "refused"
	downloadDigestMismatch = "digest_mismatch"
	downloadCanceled       = "canceled"
	downloadError          = "error"
)

// engineMetrics holds an Engine's collectors. The byte counters and gauges
// are read at scrape time from what the engine keeps anyway, so the
// download path pays for nothing but one counter per finished download.
type engineMetrics struct {
	set       *metricset.Set // nil: counting nothing
	downloads *prometheus.CounterVec
}

// newEngineMetrics registers e's metrics on reg; a nil reg gives metrics
// that count nothing.
func newEngineMetrics(reg prometheus.Registerer, e *Engine) (*engineMetrics, error) {
	m := &engineMetrics{}
	if reg == nil {
		return m, nil
	}
	m.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_p2p_downloads_total",
		Help: "Blob downloads through the swarm that ended, by result: success, not_found, refused (the origin refused the credentials), digest_mismatch, canceled, error.",
	}, []string{"result"})
	for _, r := range []string{downloadSuccess, downloadNotFound, downloadRefused, downloadDigestMismatch, downloadCanceled, downloadError} {
		m.downloads.WithLabelValues(r)
	}
	set, err := metricset.Register(reg, m.downloads, &engineCollector{e: e})
	if err != nil {
		return nil, fmt.Errorf("p2p: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// unregister removes the collectors, so that a new Engine can register on
// the same registry.
func (m *engineMetrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}

// downloadEnded counts a download that ended with err (nil: committed).
// closing tells a download cut short by Close.
func (m *engineMetrics) downloadEnded(err error, closing bool) {
	if m == nil || m.set == nil {
		return
	}
	var oe *blob.OriginError
	result := downloadError
	switch {
	case err == nil:
		result = downloadSuccess
	case errors.Is(err, blob.ErrDigestMismatch):
		result = downloadDigestMismatch
	case errors.Is(err, blob.ErrNotFound):
		result = downloadNotFound
	case errors.As(err, &oe) && oe.StatusCode >= 400 && oe.StatusCode < 500:
		result = downloadRefused
	case closing:
		result = downloadCanceled
	}
	m.downloads.WithLabelValues(result).Inc()
}

var (
	receivedDesc = prometheus.NewDesc("eagle_p2p_received_bytes_total",
		"Blob data received, by where it came from: agent or seeder (useful piece data from peers), origin (fetched from the origin by this node itself).",
		[]string{"from"}, nil)
	uploadedDesc = prometheus.NewDesc("eagle_p2p_uploaded_bytes_total",
		"Piece data sent to other peers.", nil, nil)
	activeDesc = prometheus.NewDesc("eagle_p2p_active_downloads",
		"Blobs being downloaded through the swarm now.", nil, nil)
	cacheDesc = prometheus.NewDesc("eagle_p2p_cache_bytes",
		"Bytes of the complete, verified blobs the engine holds and seeds.", nil, nil)
	peersDesc = prometheus.NewDesc("eagle_p2p_peers",
		"Peer connections open now, over all blobs.", nil, nil)
	bannedDesc = prometheus.NewDesc("eagle_p2p_banned_peers",
		"Peer addresses banned for sending pieces that failed their hash.", nil, nil)
	directDesc = prometheus.NewDesc("eagle_p2p_direct_bytes_total",
		"Piece data moved by direct transfers (whole pieces over HTTP on the peer port) rather than the peer wire, by direction: received or sent. Also counted in eagle_p2p_received_bytes_total and eagle_p2p_uploaded_bytes_total.",
		[]string{"direction"}, nil)
	cutThroughDesc = prometheus.NewDesc("eagle_p2p_cut_through_bytes_total",
		"Blob data of cold pulls received as the seeder fetched it from the origin, by how: stream (from the seeder) or relay (from the node streamed before this one). Also counted in eagle_p2p_received_bytes_total.",
		[]string{"via"}, nil)
	wastedDesc = prometheus.NewDesc("eagle_p2p_wasted_bytes_total",
		"Piece data received over the peer wire that was not needed: chunks the node already had (asked of two peers at once, or arriving after their piece was verified). Not counted in eagle_p2p_received_bytes_total.",
		nil, nil)
	upstreamDesc = prometheus.NewDesc("eagle_p2p_upstream_bytes_total",
		"Piece data received from upstream peers: other locations' peers that the tracker's topology policy handed this node as one of its location's border peers. What the node imported across its location's border; also counted in eagle_p2p_received_bytes_total.",
		nil, nil)
	plainDesc = prometheus.NewDesc("eagle_p2p_peers_seeded_plainly_total",
		"Peer connections a seeder stopped super-seeding because they got pieces from it only while other peers held pieces they lacked: peers that cannot reach, or did not learn of, the others. Rising steadily, it says agents cannot reach each other.",
		nil, nil)
)

// engineCollector reads an Engine's counters and its blob table at scrape
// time.
type engineCollector struct{ e *Engine }

// Describe implements prometheus.Collector.
func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- receivedDesc
	ch <- uploadedDesc
	ch <- activeDesc
	ch <- cacheDesc
	ch <- peersDesc
	ch <- bannedDesc
	ch <- directDesc
	ch <- cutThroughDesc
	ch <- plainDesc
	ch <- wastedDesc
	ch <- upstreamDesc
}

// Collect implements prometheus.Collector.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.Stats()
	active, cached := c.e.blobCounts()
	ch <- prometheus.MustNewConstMetric(receivedDesc, prometheus.CounterValue, float64(st.BytesFromAgents), "agent")
	ch <- prometheus.MustNewConstMetric(receivedDesc, prometheus.CounterValue, float64(st.BytesFromSeeders), "seeder")
	ch <- prometheus.MustNewConstMetric(receivedDesc, prometheus.CounterValue, float64(st.BytesFromOrigin), "origin")
	ch <- prometheus.MustNewConstMetric(uploadedDesc, prometheus.CounterValue, float64(st.BytesUploaded))
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active))
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.GaugeValue, float64(cached))
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(st.Peers))
	ch <- prometheus.MustNewConstMetric(bannedDesc, prometheus.GaugeValue, float64(st.BannedPeers))
	ch <- prometheus.MustNewConstMetric(directDesc, prometheus.CounterValue, float64(st.BytesDirect), "received")
	ch <- prometheus.MustNewConstMetric(directDesc, prometheus.CounterValue, float64(c.e.directUploaded.Load()), "sent")
	ch <- prometheus.MustNewConstMetric(cutThroughDesc, prometheus.CounterValue, float64(st.BytesStreamed), "stream")
	ch <- prometheus.MustNewConstMetric(cutThroughDesc, prometheus.CounterValue, float64(st.BytesRelayed), "relay")
	ch <- prometheus.MustNewConstMetric(wastedDesc, prometheus.CounterValue, float64(st.BytesWasted))
	ch <- prometheus.MustNewConstMetric(upstreamDesc, prometheus.CounterValue, float64(st.BytesFromUpstream))
	ch <- prometheus.MustNewConstMetric(plainDesc, prometheus.CounterValue, float64(st.PeersSeededPlainly))
}

// blobCounts returns the number of downloads in progress and the total size
// of the blobs that are complete (committed, seeding).
func (e *Engine) blobCounts() (active int, cachedBytes int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ent := range e.blobs {
		select {
		case <-ent.done:
			// done is closed after doneErr and size are set.
			if ent.doneErr == nil {
				cachedBytes += ent.size
			}
		default:
			active++
		}
	}
	return active, cachedBytes
}
