package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeSwarmOutputs writes, in dir, bench-swarm.csv (node, eagle_s,
// central_s: node i's completion time in the Eagle and the central run)
// and bench-swarm.svg, a chart of the completion times of the Eagle and
// the central run, each sorted, against the floor L/C. It returns their paths.
func writeSwarmOutputs(dir string, eagle, central []float64, floor float64) (csvPath, chartPath string, err error) {
	csvPath = filepath.Join(dir, "bench-swarm.csv")
	chartPath = filepath.Join(dir, "bench-swarm.svg")
	if err := writeSwarmCSV(csvPath, eagle, central); err != nil {
		return "", "", err
	}
	if err := writeSwarmChart(chartPath, eagle, central, floor); err != nil {
		return "", "", err
	}
	return csvPath, chartPath, nil
}

func writeSwarmCSV(path string, eagle, central []float64) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("csv: %w", cerr)
		}
	}()
	w := csv.NewWriter(f)
	w.Write([]string{"node", "eagle_s", "central_s"})
	for i := range max(len(eagle), len(central)) {
		w.Write([]string{strconv.Itoa(i), cell(eagle, i), cell(central, i)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

func cell(xs []float64, i int) string {
	if i >= len(xs) {
		return ""
	}
	return strconv.FormatFloat(xs[i], 'f', 3, 64)
}

func writeSwarmChart(path string, eagle, central []float64, floor float64) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%d nodes pull one blob at once", len(eagle))
	p.X.Label.Text = "nodes done"
	p.Y.Label.Text = "completion (s)"
	p.Legend.Top = true
	p.Legend.Left = true
	series := []struct {
		name string
		xs   []float64
		c    color.RGBA
	}{
		{"Eagle", eagle, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}},
		{"central cache", central, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}},
	}
	for _, s := range series {
		sorted := slices.Sorted(slices.Values(s.xs))
		pts := make(plotter.XYs, len(sorted))
		for i, v := range sorted {
			pts[i] = plotter.XY{X: float64(i + 1), Y: v}
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		l.Color, sc.Color = s.c, s.c
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	fl, err := plotter.NewLine(plotter.XYs{{X: 1, Y: floor}, {X: float64(max(len(eagle), len(central), 2)), Y: floor}})
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fl.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(fl)
	p.Legend.Add("floor L/C", fl)
	p.Y.Min = 0
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}
