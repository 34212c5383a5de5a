package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// TestChartWellFormed writes the chart of a three-run sweep and parses it as XML: an
// <svg> root, one <polyline> per series (p50, p90, p99, RSS idle, RSS peak) with a point
// per run, and a <circle> per point; text is escaped.
func TestChartWellFormed(t *testing.T) {
	var reps []*Report
	for i, n := range []int{1000, 5000, 10000} {
		r := &Report{Followers: n, Transport: "sse<&>", LineSize: 128, Rate: 20}
		r.Latency = Summary{P50Ms: float64(i + 1), P90Ms: float64(2 * (i + 1)), P99Ms: float64(10 * (i + 1))}
		r.Server.Idle.RSSBytes = float64(n * 5 << 10)
		r.Server.Peak.RSSBytes = float64(n * 8 << 10)
		reps = append(reps, r)
	}
	var buf bytes.Buffer
	if err := WriteChart(&buf, reps); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&buf)
	points := map[string]int{}
	var root string
	circles := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		switch se.Name.Local {
		case "polyline":
			var name, pts string
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "data-series":
					name = a.Value
				case "points":
					pts = a.Value
				}
			}
			points[name] = len(strings.Fields(pts))
		case "circle":
			circles++
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	for _, s := range []string{"p50", "p90", "p99", "RSS idle", "RSS peak"} {
		if points[s] != 3 {
			t.Errorf("series %q has %d points, want 3 (series: %v)", s, points[s], points)
		}
	}
	if circles != 15 {
		t.Errorf("%d points drawn, want 15", circles)
	}
	if err := WriteChart(io.Discard, nil); err == nil {
		t.Error("a chart of no runs was written")
	}
}
