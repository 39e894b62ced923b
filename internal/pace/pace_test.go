package pace

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestWaitTakesMoreThanABurst(t *testing.T) {
	// 1 KiB/s with a 256-byte burst: 2 KiB more than the bucket holds
	// cannot pass at once, and WaitN alone would refuse it.
	l := rate.NewLimiter(1024, 256)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Wait(ctx, l, 2048); err == nil {
		t.Fatal("2 KiB passed a 1 KiB/s limiter within 50 ms")
	}
	if err := Wait(context.Background(), rate.NewLimiter(rate.Inf, 16), 1<<20); err != nil {
		t.Fatalf("an unlimited limiter with a small burst: %v", err)
	}
	if err := Wait(context.Background(), nil, 1<<30); err != nil {
		t.Fatalf("nil limiter: %v", err)
	}
}
