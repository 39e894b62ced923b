package p2p

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/time/rate"

	"github.com/eagle-p2p/eagle/storage"
)

// Rate is a transfer rate in bytes per second, written in configuration as
// a human string: "50MiB/s", "400Mbit/s", "1GB/s". Bit units are decimal
// (kbit, Mbit, Gbit) or binary (Kibit, Mibit, Gibit); byte units are those
// of storage.Size. Zero means unlimited.
type Rate float64

// ParseRate parses a human rate. "" and "0" mean unlimited (0).
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if t == "" || t == "0" {
		return 0, nil
	}
	body, ok := strings.CutSuffix(t, "/s")
	if !ok {
		return 0, fmt.Errorf("rate %q: want an amount per second, such as 50MiB/s or 400Mbit/s", s)
	}
	bits := false
	if num, ok := strings.CutSuffix(body, "bit"); ok {
		body, bits = num+"B", true
	}
	n, err := storage.ParseSize(body)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	if bits {
		return Rate(float64(n) / 8), nil
	}
	return Rate(n), nil
}

// String formats the rate in MiB/s (or B/s below 1 MiB/s); "unlimited" for 0.
func (r Rate) String() string {
	switch {
	case r == 0:
		return "unlimited"
	case r >= 1<<20:
		return strconv.FormatFloat(float64(r)/(1<<20), 'f', -1, 64) + "MiB/s"
	default:
		return strconv.FormatFloat(float64(r), 'f', -1, 64) + "B/s"
	}
}

// UnmarshalText parses a human rate, for YAML and flags.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText formats the rate for YAML.
func (r Rate) MarshalText() ([]byte, error) {
	if r == 0 {
		return []byte("0"), nil
	}
	return []byte(strconv.FormatFloat(float64(r), 'f', -1, 64) + "B/s"), nil
}

// Set implements flag.Value.
func (r *Rate) Set(v string) error { return r.UnmarshalText([]byte(v)) }

// Limiter returns a token bucket for the rate, or nil for unlimited. The
// burst is a quarter second of traffic, at least 256 KiB (one torrent
// request batch), so a short burst cannot overshoot the cap by much.
func (r Rate) Limiter() *rate.Limiter {
	if r <= 0 {
		return nil
	}
	burst := max(int(r/4), 256<<10)
	return rate.NewLimiter(rate.Limit(r), burst)
}
