package storage

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes, written in configuration as a human string:
// "100GiB", "512MiB", "1.5TB", "4096" (bytes). Binary units (KiB, MiB,
// GiB, TiB) are powers of 1024; decimal units (kB, MB, GB, TB) powers of
// 1000.
type Size int64

var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// ParseSize parses a human size such as "100GiB". Negative sizes, unknown
// units and sizes over 8 EiB are errors.
func ParseSize(s string) (Size, error) {
	v, err := parseQuantity(s, sizeUnits)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return Size(v), nil
}

// parseQuantity parses "<number><unit>" with units from table.
func parseQuantity(s string, table map[string]float64) (float64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("no number")
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", num)
	}
	mult, ok := table[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	v *= mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return v, nil
}

// String formats s with the largest binary unit that keeps it whole.
func (s Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalText parses a human size, for YAML and flags.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText formats the size for YAML.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Set implements flag.Value.
func (s *Size) Set(v string) error { return s.UnmarshalText([]byte(v)) }
