package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// topoFloors are the times a measurement is judged against, in seconds:
// floor is L/C, a node's own link; lateBound is what staggered_ok allows
// the late datacenter, 1.25 × (stagger + L/C); lateFloor is the least the
// late datacenter can take when its border is tighter than a node's link,
// stagger + L/min(C, B): the whole blob crosses its border once at least.
type topoFloors struct{ floor, lateBound, lateFloor float64 }

func floorsOf(o topoOptions) topoFloors {
	L := float64(o.size)
	floor := L / float64(o.cap)
	return topoFloors{
		floor:     floor,
		lateBound: 1.25 * (o.stagger.Seconds() + floor),
		lateFloor: o.stagger.Seconds() + L/float64(min(o.cap, o.borderCap)),
	}
}

// crossRatio is the cross-datacenter bytes in units of (K−1)·L: 1 when
// every datacenter but the seeders' took the blob across its border once.
func (m topoMeasure) crossRatio(o topoOptions) float64 {
	return float64(m.cross) / (float64(o.dcs-1) * float64(o.size))
}

// lateSlowest is the slowest completion in the last datacenter, seconds
// from the common start (the late one's in the staggered case).
func (m topoMeasure) lateSlowest() float64 { return percentile(m.times[len(m.times)-1], 100) }

// name is the measurement's row label.
func (m topoMeasure) name(o topoOptions) string {
	if m.staggered {
		return fmt.Sprintf("%s, dc%d +%s", m.policy, o.dcs-1, o.stagger)
	}
	return m.policy
}

// printTopoMeasure prints one measurement as it ends: its headline, then
// per datacenter what crossed its border and where its agents' bytes came
// from, in copies of the blob.
func printTopoMeasure(w io.Writer, o topoOptions, m topoMeasure) {
	L, f := float64(o.size), floorsOf(o)
	all := m.all()
	fetches := make([]string, len(m.seederFetches))
	for i, n := range m.seederFetches {
		fetches[i] = strconv.Itoa(n)
	}
	fmt.Fprintf(w, "%s: cross=%.1fMiB cross_ratio=%.2f slowest=%.2fs p50=%.2fs ratio_slowest=%.2f ratio_p50=%.2f origin_gets=%d origin_copies=%.2f seeder_fetches=%s seeder_copies=%.2f cpu_busy=%.2f\n",
		m.name(o), float64(m.cross)/(1<<20), m.crossRatio(o), percentile(all, 100), percentile(all, 50),
		percentile(all, 100)/f.floor, percentile(all, 50)/f.floor, m.originGETs, float64(m.originBytes)/L, strings.Join(fetches, ","), float64(m.seederUpload)/L, m.cpuBusy)
	for k := range m.times {
		fmt.Fprintf(w, "  dc%d: into_dc=%.2f out_of_dc=%.2f from_seeders=%.2f from_agents=%.2f wasted=%.2f from_upstream=%.2f slowest=%.2fs p50=%.2fs (copies of L) dropped_into_dc=%d packets\n",
			k, float64(m.in[k])/L, float64(m.out[k])/L, float64(m.fromSeeders[k])/L, float64(m.fromAgents[k])/L,
			float64(m.wasted[k])/L, float64(m.upstream[k])/L, percentile(m.times[k], 100), percentile(m.times[k], 50), m.dropped[k])
	}
	if m.staggered {
		fmt.Fprintf(w, "  late dc%d: slowest=%.2fs from t=0, bound 1.25×(stagger+L/C)=%.2fs, its border's floor stagger+L/min(C,B)=%.2fs\n",
			o.dcs-1, m.lateSlowest(), f.lateBound, f.lateFloor)
	}
}

// printTopoSummary prints the side-by-side table (medians over the runs,
// with their ranges when there were several), cpu_busy, and the last line.
func printTopoSummary(w io.Writer, o topoOptions, runs []topoRun) {
	f := floorsOf(o)
	format := func(xs []float64, verb string) string {
		if len(xs) == 0 {
			return "-"
		}
		return spread(xs, verb)
	}
	fmt.Fprintf(w, "\nfloor L/C=%.2fs; cross ratio = cross bytes / ((K-1)·L)", f.floor)
	if len(runs) > 1 {
		fmt.Fprintf(w, "; median of %d runs [range]", len(runs))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "policy\tcross MiB\tcross ratio\tslowest s\tp50 s\tslowest/floor\tp50/floor\tcpu_busy\t")
	var measures [][]topoMeasure
	for _, p := range o.policies {
		measures = append(measures, column2(runs, func(r topoRun) topoMeasure { return r.byPolicy[p] }))
	}
	measures = append(measures, column2(runs, func(r topoRun) topoMeasure { return r.staggered }))
	busiest := 0.0
	for _, ms := range measures {
		col := func(g func(topoMeasure) float64) []float64 { return column(ms, g) }
		busy := col(func(m topoMeasure) float64 { return m.cpuBusy })
		busiest = max(busiest, median(busy))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", ms[0].name(o),
			format(col(func(m topoMeasure) float64 { return float64(m.cross) / (1 << 20) }), "%.1f"),
			format(col(func(m topoMeasure) float64 { return m.crossRatio(o) }), "%.2f"),
			format(col(func(m topoMeasure) float64 { return percentile(m.all(), 100) }), "%.2f"),
			format(col(func(m topoMeasure) float64 { return percentile(m.all(), 50) }), "%.2f"),
			format(col(func(m topoMeasure) float64 { return percentile(m.all(), 100) / f.floor }), "%.2f"),
			format(col(func(m topoMeasure) float64 { return percentile(m.all(), 50) / f.floor }), "%.2f"),
			format(busy, "%.2f"))
	}
	tw.Flush()
	late := column(runs, func(r topoRun) float64 { return r.staggered.lateSlowest() })
	fmt.Fprintf(w, "staggered (%s, dc%d +%s): late slowest %ss from t=0, bound 1.25×(stagger+L/C)=%.2fs, its border's floor stagger+L/min(C,B)=%.2fs\n",
		runs[0].staggered.policy, o.dcs-1, o.stagger, format(late, "%.2f"), f.lateBound, f.lateFloor)
	fmt.Fprintf(w, "cpu_busy=%.2f (the busiest measurement's median, of %d cores)", busiest, numCPU())
	if busiest > 0.9 {
		fmt.Fprint(w, ": CPU-bound, the times measure the machine; lower -cap")
	}
	fmt.Fprintln(w)

	// The last line: each ratio is the median of each run's own ratio.
	ratio := func(p string) string {
		if _, ok := runs[0].byPolicy[p]; !ok {
			return "NaN"
		}
		return fmt.Sprintf("%.3f", median(column(runs, func(r topoRun) float64 { return r.byPolicy[p].crossRatio(o) })))
	}
	vsRandom := math.NaN()
	if _, ok := runs[0].byPolicy["topology"]; ok {
		if _, ok := runs[0].byPolicy["random"]; ok {
			vsRandom = median(column(runs, func(r topoRun) float64 {
				return percentile(r.byPolicy["topology"].all(), 100) / percentile(r.byPolicy["random"].all(), 100)
			}))
		}
	}
	lateMedian := median(late)
	fmt.Fprintf(w, "bench: topology dcs=%d agents=%d cross_bytes_ratio=%s random_cross_ratio=%s slowest_ratio_vs_random=%.3f staggered_ok=%t completeness_cross_ratio=%s staggered_s=%.3f staggered_bound_s=%.3f staggered_border_floor_s=%.3f floor_s=%.3f size=%d cap=%d border_cap=%d cpu_busy=%.2f runs=%d tls=%t\n",
		o.dcs, o.dcs*o.perDC, ratio("topology"), ratio("random"), vsRandom, lateMedian <= f.lateBound, ratio("completeness"),
		lateMedian, f.lateBound, f.lateFloor, f.floor, int64(o.size), int64(o.cap), int64(o.borderCap), busiest, len(runs), !o.insecure)
}

// column2 returns f of each row, like column for values that are not
// figures.
func column2[T, U any](rows []T, f func(T) U) []U {
	us := make([]U, len(rows))
	for i, r := range rows {
		us[i] = f(r)
	}
	return us
}
