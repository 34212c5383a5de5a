package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Report is what a run saw. Durations are in milliseconds or seconds as their names say,
// sizes in bytes.
type Report struct {
	Mode               string    `json:"mode"` // fanout, streams, ingest or churn
	URL                string    `json:"url"`
	Target             string    `json:"target"`   // sluice, nchan or durable-streams
	Protocol           string    `json:"protocol"` // busl, nchan or durable-streams
	Transport          string    `json:"transport"`
	Streams            int       `json:"streams"`
	FollowersPerStream int       `json:"followers_per_stream"`
	Followers          int       `json:"followers"` // in all
	LineSize           int       `json:"line_size"`
	Rate               float64   `json:"rate"` // lines/s asked of each producer; 0: as fast as possible
	Started            time.Time `json:"started"`
	// DeliverySeconds runs from the first line published to the last follower done.
	DeliverySeconds float64        `json:"delivery_seconds"`
	Connect         ConnectReport  `json:"connect"`
	Producers       ProducerReport `json:"producers"`
	// Complete counts the followers that got exactly the published bytes, in order, once,
	// and the end of the stream; Incomplete names the others and says why.
	Complete   int          `json:"complete"`
	Incomplete []Incomplete `json:"incomplete"`
	Latency    Summary      `json:"latency"` // publish → receive, every line at every follower
	Throughput Throughput   `json:"throughput"`
	Server     ServerReport `json:"server"`
	Bench      BenchCost    `json:"bench"`
	Churn      *ChurnReport `json:"churn,omitempty"`
}

// BenchCost is the load generator's own CPU use while delivery went on: near all of its
// cores means the figures measure the bench as much as the server.
type BenchCost struct {
	Cores              int     `json:"cores"`
	CPUDeliverySeconds float64 `json:"cpu_delivery_seconds"`
}

// ConnectReport is how following began: from dialling to the response head. In Durable
// Streams a follower may ask again: Reconnects counts the SSE event streams that the
// server ended before the stream's end, which followers resumed; Polls the long-polls.
type ConnectReport struct {
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	WallSeconds float64 `json:"wall_seconds"` // to connect them all
	Time        Summary `json:"time"`
	Reconnects  int     `json:"reconnects,omitempty"`
	Polls       int     `json:"polls,omitempty"`
}

// ProducerReport sums up the producers.
type ProducerReport struct {
	Count    int      `json:"count"`
	Lines    int64    `json:"lines"` // in all
	Bytes    int64    `json:"bytes"` // in all
	RateMin  float64  `json:"rate_min"`
	RateMean float64  `json:"rate_mean"` // lines/s kept, per producer
	MaxLagMs float64  `json:"max_lag_ms"`
	Errors   []string `json:"errors,omitempty"`
}

// Throughput is the stream bytes moved per second, framing not counted: in, from the
// first byte sent to the server's answer (every byte stored, the stream closed); out,
// received by all followers together until the last one finished.
type Throughput struct {
	InMBps  float64 `json:"in_mb_per_s"`
	OutMBps float64 `json:"out_mb_per_s"`
}

// Incomplete is a follower that did not get exactly what was published.
type Incomplete struct {
	Name      string `json:"name"` // fN: its Request-Id is bench-<run>-fN
	Stream    string `json:"stream"`
	Transport string `json:"transport"`
	Bytes     int64  `json:"bytes"`
	Reason    string `json:"reason"`
}

// ServerReport is the server's state from its /metrics: before connecting, with every
// follower connected and idle, the peaks sampled every second, and after the run.
type ServerReport struct {
	Before Sample `json:"before"`
	Idle   Sample `json:"idle"`
	Peak   Sample `json:"peak"`
	// Delivered is scraped as the last follower finished, for the CPU figure; After once
	// the server has let every follower go.
	Delivered Sample `json:"delivered"`
	After     Sample `json:"after"`
	// PID is the server process whose (and whose children's) resident memory, CPU time and
	// open files were read from /proc; 0: all from /metrics.
	PID int `json:"pid,omitempty"`
	// CPU seconds the server used connecting the followers, and delivering.
	CPUConnectSeconds  float64 `json:"cpu_connect_seconds"`
	CPUDeliverySeconds float64 `json:"cpu_delivery_seconds"`
	// RSSPerIdleFollower is (idle RSS - RSS before) / followers; HeapPerIdleFollower
	// the same for the Go heap in use.
	RSSPerIdleFollower  float64 `json:"rss_per_idle_follower_bytes"`
	HeapPerIdleFollower float64 `json:"heap_per_idle_follower_bytes"`
}

// OK reports whether every follower was complete and every producer succeeded.
func (r *Report) OK() bool {
	return len(r.Incomplete) == 0 && len(r.Producers.Errors) == 0 && (r.Churn == nil || r.Churn.OK())
}

// summarize fills the report from the followers and producers.
func (r *run) summarize(rep *Report, pubStart time.Time) {
	rep.Latency = r.lat.Summary()
	rep.Connect.Time = r.conn.Summary()
	pr := &rep.Producers
	pr.Count = len(r.ps)
	pr.RateMin = -1
	var inEnd time.Time
	for _, p := range r.ps {
		pr.Lines += p.lines
		pr.Bytes += p.bytes
		rate := p.achieved()
		pr.RateMean += rate / float64(len(r.ps))
		if pr.RateMin < 0 || rate < pr.RateMin {
			pr.RateMin = rate
		}
		pr.MaxLagMs = max(pr.MaxLagMs, ms(p.maxLag))
		if p.err != nil {
			pr.Errors = append(pr.Errors, fmt.Sprintf("%s: %v", p.key, p.err))
		}
		if p.acked.After(inEnd) {
			inEnd = p.acked
		}
	}
	var out int64
	var outEnd time.Time
	for i := range r.fs {
		f := &r.fs[i]
		if f.ok {
			rep.Connect.OK++
		} else {
			rep.Connect.Failed++
		}
		if f.kind == "long-poll" {
			rep.Connect.Polls += f.requests
		} else {
			rep.Connect.Reconnects += f.requests
		}
		out += f.v.n
		if r.finished[i].After(outEnd) {
			outEnd = r.finished[i]
		}
		p := r.ps[f.stream]
		if ok, why := f.verdict(p.bytes, p.crc); ok {
			rep.Complete++
		} else {
			rep.Incomplete = append(rep.Incomplete, Incomplete{Name: f.name(), Stream: p.key,
				Transport: f.kind, Bytes: f.v.n, Reason: why})
		}
	}
	if d := inEnd.Sub(pubStart).Seconds(); d > 0 {
		rep.Throughput.InMBps = float64(pr.Bytes) / d / 1e6
	}
	if d := outEnd.Sub(pubStart).Seconds(); d > 0 {
		rep.Throughput.OutMBps = float64(out) / d / 1e6
	}
	s := &rep.Server
	if s.Before.OK && s.Idle.OK {
		s.CPUConnectSeconds = s.Idle.CPUSeconds - s.Before.CPUSeconds
		if n := float64(len(r.fs)); n > 0 {
			s.RSSPerIdleFollower = (s.Idle.RSSBytes - s.Before.RSSBytes) / n
			s.HeapPerIdleFollower = (s.Idle.HeapBytes - s.Before.HeapBytes) / n
		}
	}
	if s.Idle.OK && s.Delivered.OK {
		s.CPUDeliverySeconds = s.Delivered.CPUSeconds - s.Idle.CPUSeconds
	}
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) {
	target := ""
	switch {
	case r.Target != "" && r.Target != TargetSluice:
		target = " (" + r.Target + ")"
	case r.Protocol != "" && r.Protocol != ProtocolBusl:
		target = " (sluice, " + r.Protocol + ")"
	}
	fmt.Fprintf(w, "sluice bench %s %s%s: %s\n", r.Mode, r.URL, target, r.shape())
	if r.Churn != nil {
		r.Churn.writeTable(w)
	} else {
		r.writeDelivery(w)
	}
	r.writeServer(w)
	for i, inc := range r.Incomplete {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more incomplete (see --json)\n", len(r.Incomplete)-i)
			break
		}
		fmt.Fprintf(w, "  INCOMPLETE %s (%s, %s): %s\n", inc.Name, inc.Transport, inc.Stream, inc.Reason)
	}
	for _, e := range r.Producers.Errors {
		fmt.Fprintf(w, "  PRODUCER FAILED %s\n", e)
	}
}

func (r *Report) shape() string {
	if r.Churn != nil {
		return fmt.Sprintf("%d %s followers at a time, %s", r.Churn.Concurrency, r.Transport, time.Duration(r.Churn.Seconds*float64(time.Second)).Round(time.Second))
	}
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("at %g lines/s", r.Rate)
	}
	return fmt.Sprintf("%d stream(s) × %d %s follower(s) = %d, %d-byte lines %s", r.Streams,
		r.FollowersPerStream, r.Transport, r.Followers, r.LineSize, rate)
}

func (r *Report) writeDelivery(w io.Writer) {
	c, p, l := r.Connect, r.Producers, r.Latency
	fmt.Fprintf(w, "  connect     %d connected in %.2fs (each: p50 %s, p99 %s, max %s), %d failed\n",
		c.OK, c.WallSeconds, fms(c.Time.P50Ms), fms(c.Time.P99Ms), fms(c.Time.MaxMs), c.Failed)
	if c.Reconnects > 0 || c.Polls > 0 {
		fmt.Fprintf(w, "  requests    %d long-polls, %d SSE reconnections (event streams the server ended early)\n",
			c.Polls, c.Reconnects)
	}
	fmt.Fprintf(w, "  complete    %d of %d followers got every byte, in order, once, and the end\n", r.Complete, r.Followers)
	asked := "as fast as possible"
	if r.Rate > 0 {
		asked = fmt.Sprintf("asked %g", r.Rate)
	}
	fmt.Fprintf(w, "  producers   %d: %d lines, %s, kept %.1f lines/s (slowest %.1f, %s), most late %s\n",
		p.Count, p.Lines, mb(float64(p.Bytes)), p.RateMean, p.RateMin, asked, fms(p.MaxLagMs))
	fmt.Fprintf(w, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d lines received)\n",
		fms(l.P50Ms), fms(l.P90Ms), fms(l.P99Ms), fms(l.P999Ms), fms(l.MaxMs), l.Count)
	fmt.Fprintf(w, "  throughput  in %.1f MB/s, out %.1f MB/s (all followers), delivery took %.2fs\n",
		r.Throughput.InMBps, r.Throughput.OutMBps, r.DeliverySeconds)
}

func (r *Report) writeServer(w io.Writer) {
	s := r.Server
	if !s.Before.OK && !s.After.OK {
		fmt.Fprintln(w, "  server      no /metrics and no server process: server figures unavailable")
		return
	}
	metrics := s.Before.Metrics || s.After.Metrics
	if s.PID != 0 {
		fmt.Fprintf(w, "  server      RSS, CPU and open files from /proc: process %d and its children\n", s.PID)
	}
	idle := "idle"
	if r.Churn != nil {
		idle = "-"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  server\tbefore\t%s\tpeak\tafter\t\n", idle)
	row := func(name string, f func(Sample) string) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t\n", name, opt(s.Before, f), opt(s.Idle, f), opt(s.Peak, f), opt(s.After, f))
	}
	row("RSS", func(x Sample) string { return mib(x.RSSBytes) })
	if metrics {
		row("Go heap", func(x Sample) string { return mib(x.HeapBytes) })
		row("goroutines", func(x Sample) string { return fmt.Sprintf("%.0f", x.Goroutines) })
	}
	row("open files", func(x Sample) string { return fmt.Sprintf("%.0f", x.OpenFDs) })
	if metrics {
		row("followers", func(x Sample) string { return fmt.Sprintf("%.0f", x.Followers) })
	}
	row("CPU seconds", func(x Sample) string { return fmt.Sprintf("%.2f", x.CPUSeconds) })
	tw.Flush()
	if r.Churn == nil {
		pct := 0.0
		if r.DeliverySeconds > 0 {
			pct = 100 * s.CPUDeliverySeconds / r.DeliverySeconds
		}
		fmt.Fprintf(w, "  server CPU  %.2fs connecting, %.2fs delivering (%.0f%% of a core)\n",
			s.CPUConnectSeconds, s.CPUDeliverySeconds, pct)
		if r.DeliverySeconds > 0 && r.Bench.Cores > 0 {
			fmt.Fprintf(w, "  bench CPU   %.2fs delivering (%.0f%% of its %d core(s))\n", r.Bench.CPUDeliverySeconds,
				100*r.Bench.CPUDeliverySeconds/r.DeliverySeconds/float64(r.Bench.Cores), r.Bench.Cores)
		}
		if metrics {
			fmt.Fprintf(w, "  per idle follower  %s RSS, %s Go heap\n", kib(s.RSSPerIdleFollower), kib(s.HeapPerIdleFollower))
		} else {
			fmt.Fprintf(w, "  per idle follower  %s RSS\n", kib(s.RSSPerIdleFollower))
		}
	}
}

func opt(s Sample, f func(Sample) string) string {
	if !s.OK {
		return "-"
	}
	return f(s)
}

// WriteSweepTable writes one line per run of a sweep.
func WriteSweepTable(w io.Writer, reps []*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "followers\tcomplete\tconnect s\tp50\tp90\tp99\tmax\tlines/s\tRSS idle\tRSS peak\tper follower\tCPU s\t")
	for _, r := range reps {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%.2f\t\n", r.Followers, r.Complete,
			r.Connect.WallSeconds, fms(r.Latency.P50Ms), fms(r.Latency.P90Ms), fms(r.Latency.P99Ms),
			fms(r.Latency.MaxMs), r.Producers.RateMin, mib(r.Server.Idle.RSSBytes), mib(r.Server.Peak.RSSBytes),
			kib(r.Server.RSSPerIdleFollower), r.Server.CPUDeliverySeconds)
	}
	tw.Flush()
}

func fms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }
func mb(b float64) string  { return fmt.Sprintf("%.1f MB", b/1e6) }
