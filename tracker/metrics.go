package tracker

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/internal/metricset"
)

// StoreStats is the size of a PeerStore and its limits.
type StoreStats struct {
	// Swarms is the number of swarms the store holds.
	Swarms int
	// Peers is the number of peers over all swarms.
	Peers int
	// MaxSwarms, MaxPeers and MaxPeersPerSwarm are the store's limits (see
	// StoreConfig); zero means the store does not report that limit.
	MaxSwarms        int
	MaxPeers         int
	MaxPeersPerSwarm int
}

// StatsStore is a PeerStore that can report its size cheaply. A Server
// whose store implements it exports the eagle_tracker_swarms and
// eagle_tracker_peers gauges, and the eagle_tracker_max_* gauges of the
// limits the store reports; MemoryStore implements it.
type StatsStore interface {
	PeerStore
	// Stats returns the store's current size and its limits.
	Stats(ctx context.Context) (StoreStats, error)
}

// statsTimeout bounds one Stats call during a metrics scrape, so that a slow
// shared store cannot hang the scrape.
const statsTimeout = 5 * time.Second

// result is the outcome of an announce, the result label of
// eagle_tracker_announces_total.
type result uint8

const (
	resultOK       result = iota // answered with peers, or the stop done
	resultRejected               // malformed: answered with a failure reason
	resultError                  // the PeerStore failed: HTTP 500
	resultFull                   // the PeerStore is full (ErrFull): HTTP 503
	resultConflict               // the peer ID is another address's (ErrPeerConflict)
	numResults
)

var resultLabels = [numResults]string{
	resultOK:       "ok",
	resultRejected: "rejected",
	resultError:    "error",
	resultFull:     "full",
	resultConflict: "conflict",
}

// eventLabels are the event label values, indexed by event; a rejected
// announce, whose event may not even parse, is counted as "unknown".
var eventLabels = [...]string{
	eventNone:      "none",
	eventStarted:   "started",
	eventCompleted: "completed",
	eventStopped:   "stopped",
}

const eventUnknown = len(eventLabels)

// serverMetrics holds a Server's collectors. Its zero value (no registerer)
// counts nothing.
type serverMetrics struct {
	set *metricset.Set // nil: counting nothing
	// announces is resolved up front, one counter per event and result, so
	// that counting an announce is a single atomic add.
	announces [eventUnknown + 1][numResults]prometheus.Counter
	vec       *prometheus.CounterVec
	store     *storeCollector
}

// newServerMetrics registers the Server's metrics on reg; a nil reg gives
// metrics that count nothing.
func newServerMetrics(reg prometheus.Registerer, store PeerStore) (*serverMetrics, error) {
	m := &serverMetrics{}
	if reg == nil {
		return m, nil
	}
	m.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eagle_tracker_announces_total",
		Help: "Announces served, by BEP 3 event (none, started, completed, stopped; unknown when rejected) and result (ok; rejected: malformed; error: peer store failure; full: refused, the peer store is at a limit; conflict: refused, the peer ID is registered from another address).",
	}, []string{"event", "result"})
	for ev := range m.announces {
		label := "unknown"
		if ev < eventUnknown {
			label = eventLabels[ev]
		}
		for res := range numResults {
			if (ev == eventUnknown) != (res == resultRejected) {
				continue // a rejected announce has no event; others have one
			}
			if event(ev) == eventStopped && res == resultFull {
				continue // a stop adds nothing
			}
			m.announces[ev][res] = m.vec.WithLabelValues(label, resultLabels[res])
		}
	}
	collectors := []prometheus.Collector{m.vec}
	if ss, ok := store.(StatsStore); ok {
		m.store = newStoreCollector(ss)
		collectors = append(collectors, m.store)
	}
	set, err := metricset.Register(reg, collectors...)
	if err != nil {
		return nil, fmt.Errorf("tracker: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// unregister removes the collectors, so that a new Server can register on
// the same registry.
func (m *serverMetrics) unregister() {
	m.set.Unregister()
}

// announced counts one announce by its event and result. A rejected
// announce is counted under the event "unknown" (its event may not even
// parse).
func (m *serverMetrics) announced(ev event, res result) {
	if m.set == nil {
		return
	}
	if res == resultRejected || int(ev) >= eventUnknown {
		ev = event(eventUnknown)
	}
	if c := m.announces[ev][res]; c != nil {
		c.Inc()
	}
}

// storeCollector exports a StatsStore's size and limits at scrape time, so
// that the announce path pays nothing for it.
type storeCollector struct {
	store            StatsStore
	swarms           *prometheus.Desc
	peers            *prometheus.Desc
	maxSwarms        *prometheus.Desc
	maxPeers         *prometheus.Desc
	maxPeersPerSwarm *prometheus.Desc
}

func newStoreCollector(s StatsStore) *storeCollector {
	return &storeCollector{
		store: s,
		swarms: prometheus.NewDesc("eagle_tracker_swarms",
			"Swarms (blobs) the tracker's peer store holds.", nil, nil),
		peers: prometheus.NewDesc("eagle_tracker_peers",
			"Peers over all swarms in the tracker's peer store (a peer in two swarms counts twice).", nil, nil),
		maxSwarms: prometheus.NewDesc("eagle_tracker_max_swarms",
			"Most swarms the tracker's peer store holds (max_swarms); announces that would start more are refused as full.", nil, nil),
		maxPeers: prometheus.NewDesc("eagle_tracker_max_peers",
			"Most peers over all swarms the tracker's peer store holds (max_peers); new peers beyond it are refused as full.", nil, nil),
		maxPeersPerSwarm: prometheus.NewDesc("eagle_tracker_max_peers_per_swarm",
			"Most peers one swarm holds (max_peers_per_swarm); new peers beyond it are refused as full.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.swarms
	ch <- c.peers
	ch <- c.maxSwarms
	ch <- c.maxPeers
	ch <- c.maxPeersPerSwarm
}

// Collect implements prometheus.Collector. A failing store makes the scrape
// report the error rather than a made-up zero; a limit the store does not
// report is left out.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		err = fmt.Errorf("tracker: peer store stats: %w", err)
		ch <- prometheus.NewInvalidMetric(c.swarms, err)
		ch <- prometheus.NewInvalidMetric(c.peers, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.swarms, prometheus.GaugeValue, float64(st.Swarms))
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(st.Peers))
	for _, l := range [...]struct {
		desc *prometheus.Desc
		v    int
	}{{c.maxSwarms, st.MaxSwarms}, {c.maxPeers, st.MaxPeers}, {c.maxPeersPerSwarm, st.MaxPeersPerSwarm}} {
		if l.v > 0 {
			ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(l.v))
		}
	}
}
