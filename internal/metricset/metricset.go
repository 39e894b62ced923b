// Package metricset registers a part's Prometheus collectors as one set:
// all of them or none, and all of them removed again when the part closes,
// so that a new part can register on the same registry.
package metricset

import "github.com/prometheus/client_golang/prometheus"

// Set is collectors registered together on one Registerer. A nil *Set is
// registered nowhere; its Unregister does nothing.
type Set struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

// Register registers every collector on reg. If one fails, those already
// registered are unregistered and its error is returned unwrapped (a
// prometheus.AlreadyRegisteredError when the name is taken). A nil reg
// registers nothing and returns a nil *Set.
func Register(reg prometheus.Registerer, collectors ...prometheus.Collector) (*Set, error) {
	if reg == nil {
		return nil, nil
	}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return &Set{reg: reg, collectors: collectors}, nil
}

// Unregister removes the set's collectors from their registry.
func (s *Set) Unregister() {
	if s == nil {
		return
	}
	for _, c := range s.collectors {
		s.reg.Unregister(c)
	}
}
