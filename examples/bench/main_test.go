package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The distribution registry starts a notification broadcaster that its
	// App never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"))
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: go run ./examples/bench <swarm|tracker|hit|link|cold|topology>") {
		t.Errorf("no arguments: exit %d, %q", code, stderr.String())
	}
	for _, name := range []string{"swarm", "tracker", "hit", "link", "cold", "topology"} {
		stderr.Reset()
		if code := run([]string{name, "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "usage: go run ./examples/bench "+name) || !strings.Contains(stderr.String(), "(default ") {
			t.Errorf("%s -h: exit %d, %q", name, code, stderr.String())
		}
	}
	stderr.Reset()
	if code := run([]string{"fly"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown benchmark "fly"`) {
		t.Errorf("unknown benchmark: exit %d, %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("usage went to stdout: %q", stdout.String())
	}
}
