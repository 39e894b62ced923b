package tracker

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreStats is the size of a PeerStore.
type StoreStats struct {
	// Swarms is the number of swarms the store holds.
	Swarms int
	// Peers is the number of peers over all swarms.
	Peers int
}

// StatsStore is a PeerStore that can report its size cheaply. A Server
// whose store implements it exports the eagle_tracker_swarms and
// eagle_tracker_peers gauges; MemoryStore implements it.
type StatsStore interface {
	PeerStore
	// Stats returns the store's current size.
	Stats(ctx context.Context) (StoreStats, error)
}

// statsTimeout bounds one Stats call during a metrics scrape, so that a slow
// shared store cannot hang the scrape.
const statsTimeout = 5 * time.Second

// Label values of eagle_tracker_announces_total.
const (
	resultOK       = "ok"       // answered with peers
	resultRejected = "rejected" // malformed: answered with a failure reason
	resultError    = "error"    // the PeerStore failed: HTTP 500
)

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
	reg prometheus.Registerer
	// announces is resolved up front, one counter per event and result, so
	// that counting an announce is a single atomic add.
	announces [eventUnknown + 1][3]prometheus.Counter
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
		Help: "Announces served, by BEP 3 event (none, started, completed, stopped; unknown when rejected) and result (ok, rejected: malformed, error: peer store failure).",
	}, []string{"event", "result"})
	for ev := range m.announces {
		label := "unknown"
		if ev < eventUnknown {
			label = eventLabels[ev]
		}
		for i, res := range [...]string{resultOK, resultRejected, resultError} {
			if (ev == eventUnknown) != (res == resultRejected) {
				continue // a rejected announce has no event; others have one
			}
			m.announces[ev][i] = m.vec.WithLabelValues(label, res)
		}
	}
	if err := reg.Register(m.vec); err != nil {
		return nil, fmt.Errorf("tracker: register metrics: %w", err)
	}
	if ss, ok := store.(StatsStore); ok {
		m.store = newStoreCollector(ss)
		if err := reg.Register(m.store); err != nil {
			reg.Unregister(m.vec)
			return nil, fmt.Errorf("tracker: register metrics: %w", err)
		}
	}
	m.reg = reg
	return m, nil
}

// unregister removes the collectors, so that a new Server can register on
// the same registry.
func (m *serverMetrics) unregister() {
	if m.reg == nil {
		return
	}
	m.reg.Unregister(m.vec)
	if m.store != nil {
		m.reg.Unregister(m.store)
	}
}

// announced counts one announce by its event and by the response it got:
// HTTP 500 is a store failure, a failure reason with HTTP 200 a rejected
// request. parsed is false when the query did not parse (ev is then
// meaningless).
func (m *serverMetrics) announced(ev event, parsed bool, status int, body []byte) {
	if m.reg == nil {
		return
	}
	var res int // index into resultOK, resultRejected, resultError
	switch {
	case status == http.StatusInternalServerError:
		res = 2
	case !parsed || bytes.HasPrefix(body, failurePrefix):
		res = 1
	}
	if res == 1 || int(ev) >= eventUnknown {
		ev = event(eventUnknown)
	}
	if c := m.announces[ev][res]; c != nil {
		c.Inc()
	}
}

// failurePrefix starts every failure response (see appendFailure).
var failurePrefix = []byte("d14:failure reason")

// storeCollector exports a StatsStore's size at scrape time, so that the
// announce path pays nothing for it.
type storeCollector struct {
	store  StatsStore
	swarms *prometheus.Desc
	peers  *prometheus.Desc
}

func newStoreCollector(s StatsStore) *storeCollector {
	return &storeCollector{
		store: s,
		swarms: prometheus.NewDesc("eagle_tracker_swarms",
			"Swarms (blobs) the tracker's peer store holds.", nil, nil),
		peers: prometheus.NewDesc("eagle_tracker_peers",
			"Peers over all swarms in the tracker's peer store (a peer in two swarms counts twice).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.swarms
	ch <- c.peers
}

// Collect implements prometheus.Collector. A failing store makes the scrape
// report the error rather than a made-up zero.
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
}
