package metricset_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eagle-p2p/eagle/internal/metricset"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name + " help"})
}

func names(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		out = append(out, mf.GetName())
	}
	return out
}

// A set registers all of its collectors or none, and Unregister frees the
// names for the next set.
func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := metricset.Register(reg, counter("a_total"), counter("b_total"))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, reg); len(got) != 2 {
		t.Fatalf("registered %v, want a_total and b_total", got)
	}

	// c_total is new but b_total is taken: nothing of the second set stays.
	_, err = metricset.Register(reg, counter("c_total"), counter("b_total"))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second set: %v, want AlreadyRegisteredError", err)
	}
	if got := names(t, reg); len(got) != 2 || got[0] != "a_total" || got[1] != "b_total" {
		t.Fatalf("after the failed set: %v, want only a_total and b_total", got)
	}

	first.Unregister()
	if got := names(t, reg); len(got) != 0 {
		t.Fatalf("after Unregister: %v, want none", got)
	}
	again, err := metricset.Register(reg, counter("a_total"), counter("b_total"))
	if err != nil {
		t.Fatalf("registering the names again: %v", err)
	}
	again.Unregister()
}

// Without a registry nothing is registered and Unregister is a no-op.
func TestRegisterNil(t *testing.T) {
	s, err := metricset.Register(nil, counter("a_total"))
	if err != nil || s != nil {
		t.Fatalf("Register(nil) = %v, %v; want nil, nil", s, err)
	}
	s.Unregister()
}
