package storage

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"0": 0, "4096": 4096, "10B": 10, "1KiB": 1024, "100GiB": 100 << 30, "1.5MiB": 3 << 19,
		"2kB": 2000, "3MB": 3e6, "1TiB": 1 << 40, " 7 GiB ": 7 << 30,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "1 gigabyte", "1e3", "10XB", "99999999999TiB", "1..2MB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
	if s := Size(100 << 30).String(); s != "100GiB" {
		t.Errorf("String = %q", s)
	}
}
