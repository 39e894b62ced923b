package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// cpuTimes is the machine's aggregate CPU time from /proc/stat, in clock
// ticks: busy (everything but idle and iowait) and total.
type cpuTimes struct{ busy, total uint64 }

// readCPUTimes reads the first ("cpu ") line of /proc/stat.
func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("cpu: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("cpu: unexpected /proc/stat line %q", line)
	}
	var t cpuTimes
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("cpu: /proc/stat field %q: %w", f, err)
		}
		// Guest time (fields 9 and 10) is already counted in user time.
		if i >= 8 {
			break
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

// cpuMeter measures what fraction of the machine's cores were busy, all
// processes together, between its start and a call to busy.
type cpuMeter struct{ start cpuTimes }

// startCPU starts a meter; it reads nothing useful where /proc/stat is
// missing, and busy then reports 0.
func startCPU() cpuMeter {
	t, _ := readCPUTimes()
	return cpuMeter{start: t}
}

// busy returns the fraction (0 to 1) of all cores busy since the start.
func (m cpuMeter) busy() float64 {
	t, err := readCPUTimes()
	if err != nil || t.total <= m.start.total {
		return 0
	}
	return float64(t.busy-m.start.busy) / float64(t.total-m.start.total)
}

// cores converts a busy fraction into cores used.
func cores(busy float64) float64 { return busy * float64(numCPU()) }

// numCPU is how many cores this process may use.
func numCPU() int { return runtime.NumCPU() }
