package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// percentile returns the p-th percentile (0 < p ≤ 100) of xs by the
// nearest-rank method; 0 for no values.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// column returns f of each row: one figure of every run, for median and
// spread.
func column[T any](rows []T, f func(T) float64) []float64 {
	xs := make([]float64, len(rows))
	for i, r := range rows {
		xs[i] = f(r)
	}
	return xs
}

// peakRSS returns this process's peak resident set size (VmHWM) in bytes.
func peakRSS() (int64, error) { return vmHWM("/proc/self/status") }

// processPeakRSS returns the peak resident set size (VmHWM) of process pid.
func processPeakRSS(pid int) (int64, error) {
	return vmHWM(fmt.Sprintf("/proc/%d/status", pid))
}

// vmHWM reads the VmHWM line of a /proc/<pid>/status file, in bytes.
func vmHWM(statusPath string) (int64, error) {
	b, err := os.ReadFile(statusPath)
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("peak rss: VmHWM %q: %w", v, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("peak rss: no VmHWM in %s", statusPath)
}
