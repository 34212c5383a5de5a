package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
)

// Chart geometry, in SVG user units.
const (
	chartW   = 760
	panelH   = 270
	marginL  = 70
	marginR  = 170 // room for the legend
	marginT  = 40
	marginB  = 45
	plotW    = chartW - marginL - marginR
	plotH    = panelH - marginT - marginB
	titleGap = 30
)

// series is one line of a chart panel.
type series struct {
	name, color, dash string
	values            []float64
}

// WriteChart writes an SVG chart of a fanout sweep: publish→receive latency (p50, p90,
// p99) and the server's resident memory (all followers idle, and the peak), each against
// the number of followers. Each line is a <polyline> whose data-series attribute names
// it, with a <circle> and a <title> at every point.
func WriteChart(w io.Writer, reps []*Report) error {
	if len(reps) == 0 {
		return errors.New("chart: no runs")
	}
	xs := make([]float64, len(reps))
	pick := func(f func(*Report) float64) []float64 {
		v := make([]float64, len(reps))
		for i, r := range reps {
			v[i] = f(r)
		}
		return v
	}
	for i, r := range reps {
		xs[i] = float64(r.Followers)
	}
	lat := []series{
		{"p50", "#1b9e77", "", pick(func(r *Report) float64 { return r.Latency.P50Ms })},
		{"p90", "#7570b3", "", pick(func(r *Report) float64 { return r.Latency.P90Ms })},
		{"p99", "#d95f02", "", pick(func(r *Report) float64 { return r.Latency.P99Ms })},
	}
	mem := []series{
		{"RSS idle", "#1f78b4", "", pick(func(r *Report) float64 { return r.Server.Idle.RSSBytes / (1 << 20) })},
		{"RSS peak", "#e31a1c", "6 4", pick(func(r *Report) float64 { return r.Server.Peak.RSSBytes / (1 << 20) })},
	}
	var b bytes.Buffer
	h := 2*panelH + titleGap
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, h, chartW, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, h)
	r0 := reps[0]
	rate := "as fast as possible"
	if r0.Rate > 0 {
		rate = fmt.Sprintf("%g lines/s", r0.Rate)
	}
	text(&b, chartW/2, 20, "middle", 15, fmt.Sprintf("sluice bench fanout: %s followers, %d-byte lines at %s", r0.Transport, r0.LineSize, rate))
	panel(&b, titleGap, "publish → receive latency (ms)", xs, lat)
	panel(&b, titleGap+panelH, "server resident memory (MiB)", xs, mem)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// panel draws axes, grid, ticks and the series of one panel, top at y0.
func panel(b *bytes.Buffer, y0 int, title string, xs []float64, ss []series) {
	xmax := niceCeil(maxOf(xs))
	var ymax float64
	for _, s := range ss {
		ymax = max(ymax, maxOf(s.values))
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return marginL + x/xmax*plotW }
	py := func(y float64) float64 { return float64(y0+marginT+plotH) - y/ymax*plotH }
	top, bottom := y0+marginT, y0+marginT+plotH
	fmt.Fprintf(b, `<g class="panel">`+"\n")
	text(b, marginL, top-12, "start", 13, title)
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, py(y), marginL+plotW, py(y))
		text(b, marginL-6, int(py(y))+4, "end", 11, trimFloat(y))
	}
	for _, x := range xs {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", px(x), bottom, px(x), bottom+5)
		text(b, int(px(x)), bottom+18, "middle", 11, trimFloat(x))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, bottom, marginL+plotW, bottom)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, top, marginL, bottom)
	text(b, marginL+plotW/2, bottom+36, "middle", 12, "followers")
	for i, s := range ss {
		dash := ""
		if s.dash != "" {
			dash = ` stroke-dasharray="` + s.dash + `"`
		}
		fmt.Fprintf(b, `<polyline data-series="%s" fill="none" stroke="%s" stroke-width="2"%s points="`, esc(s.name), s.color, dash)
		for j, v := range s.values {
			fmt.Fprintf(b, "%.1f,%.1f ", px(xs[j]), py(v))
		}
		b.WriteString(`"/>` + "\n")
		for j, v := range s.values {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s at %s followers: %s</title></circle>`+"\n",
				px(xs[j]), py(v), s.color, esc(s.name), trimFloat(xs[j]), trimFloat(v))
		}
		ly := top + 10 + 20*i
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", marginL+plotW+20, ly, marginL+plotW+45, ly, s.color, dash)
		text(b, marginL+plotW+52, ly+4, "start", 12, s.name)
	}
	b.WriteString("</g>\n")
}

func text(b *bytes.Buffer, x, y int, anchor string, size int, s string) {
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s" font-size="%d">%s</text>`+"\n", x, y, anchor, size, esc(s))
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			m = max(m, x)
		}
	}
	return m
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so that axis ticks are round.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	if math.Abs(v) >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
