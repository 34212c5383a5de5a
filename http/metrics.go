package http

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
)

// metrics are the server's Prometheus collectors, all named sluice_*.
type metrics struct {
	followers    *prometheus.GaugeVec
	bytesIn      prometheus.Counter
	bytesOut     *prometheus.CounterVec
	conflicts    prometheus.Counter
	flushSeconds prometheus.Histogram
	slowDropped  prometheus.Counter
	requests     *prometheus.CounterVec // by route and status
	refused      *prometheus.CounterVec // by the limit: 413, 429, 503
}

// openStreamCounter is what a store may offer for the streams_open gauge.
type openStreamCounter interface{ OpenStreams() int }

func newMetrics(reg prometheus.Registerer, store sluice.Store) *metrics {
	m := &metrics{
		followers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_followers", Help: "Followers connected now, by transport.",
		}, []string{"transport"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_published_bytes_total", Help: "Bytes received from publishers, overlap included.",
		}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sent_bytes_total", Help: "Bytes written to followers, framing included, by transport.",
		}, []string{"transport"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_conflicts_total", Help: "Requests refused with 409: gaps, mismatched resends, appends to closed streams.",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_flush_seconds", Help: "Time to flush a follower's pending bytes to its connection.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
		}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_slow_followers_dropped_total", Help: "Followers dropped because one write stalled past the write timeout.",
		}),
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_requests_total", Help: "Requests answered, by route and status (a follower's when it ends).",
	}, []string{"route", "code"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_refused_total", Help: "Requests refused by a limit: 413 (size), 429 (rate, requests at once), 503 (streams, followers).",
	}, []string{"code"})
	reg.MustRegister(m.followers, m.bytesIn, m.bytesOut, m.conflicts, m.flushSeconds, m.slowDropped, m.requests, m.refused)
	for _, c := range []string{"413", "429", "503"} {
		m.refused.WithLabelValues(c)
	}
	for _, t := range []string{"raw", "sse", "websocket", "durable-sse", "long-poll"} {
		m.followers.WithLabelValues(t)
		m.bytesOut.WithLabelValues(t)
	}
	if c, ok := store.(openStreamCounter); ok {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_streams_open", Help: "Streams that exist and are not closed.",
		}, func() float64 { return float64(c.OpenStreams()) }))
	}
	return m
}
