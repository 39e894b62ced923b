package p2p

import "testing"

func TestParseRate(t *testing.T) {
	good := map[string]Rate{
		"": 0, "0": 0, "50MiB/s": 50 << 20, "400Mbit/s": 50e6, "1GB/s": 1e9, "8Kibit/s": 1024, "100B/s": 100,
	}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"50MiB", "fast/s", "-1MiB/s", "1Mbps", "10XB/s", "/s"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, got)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"50MiB/s", "400Mbit/s", "1.5GB/s", "0", "", "x/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err == nil && v < 0 {
			t.Fatalf("ParseRate(%q) = %v < 0", s, v)
		}
	})
}
