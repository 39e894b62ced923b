// Package pace paces byte streams with token-bucket limiters.
package pace

import (
	"context"

	"golang.org/x/time/rate"
)

// Wait blocks until l lets n bytes through, a burst at a time (a rate.Limiter
// refuses any single wait above its burst), or ctx ends. A nil l lets
// everything through at once.
func Wait(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		step := min(n, l.Burst())
		if err := l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
