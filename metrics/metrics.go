// Package metrics counts what the domain does in Prometheus collectors, named
// sluice_*: the Archiver's uploads, the file store's fsyncs (the HTTP server keeps its
// own, in package http), and what describes the instance (sluice_build_info).
// The root package knows only its small interfaces (sluice.ArchiverMetrics), so that it
// depends on no metrics library.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
)

// Archiver counts an Archiver's work: sluice_archive_uploads_{started,succeeded,
// failed}_total, sluice_archive_bytes_total, sluice_archive_upload_seconds and
// sluice_archive_queue.
type Archiver struct {
	started, succeeded, failed, bytes prometheus.Counter
	seconds                           prometheus.Histogram
	queue                             prometheus.Gauge
}

var _ sluice.ArchiverMetrics = (*Archiver)(nil)

// NewArchiver returns an Archiver's metrics, registered on reg.
func NewArchiver(reg prometheus.Registerer) *Archiver {
	m := &Archiver{
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_archive_uploads_started_total", Help: "Attempts to archive a closed stream.",
		}),
		succeeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_archive_uploads_succeeded_total", Help: "Streams archived and verified.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_archive_uploads_failed_total", Help: "Attempts to archive a stream that failed (each is retried).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_archive_bytes_total", Help: "Bytes of streams archived and verified.",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_archive_upload_seconds", Help: "Time to archive and verify one stream.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_archive_queue", Help: "Closed streams waiting to be archived.",
		}),
	}
	reg.MustRegister(m.started, m.succeeded, m.failed, m.bytes, m.seconds, m.queue)
	return m
}

// Started counts an attempt.
func (m *Archiver) Started() { m.started.Inc() }

// Failed counts a failed attempt.
func (m *Archiver) Failed() { m.failed.Inc() }

// Succeeded counts an archived stream of size bytes, archived in took.
func (m *Archiver) Succeeded(size int64, took time.Duration) {
	m.succeeded.Inc()
	m.bytes.Add(float64(size))
	m.seconds.Observe(took.Seconds())
}

// Queued sets the length of the queue.
func (m *Archiver) Queued(n int) { m.queue.Set(float64(n)) }

// Store counts a file store's fsyncs (and syncfs calls): sluice_fsync_seconds.
type Store struct {
	fsync prometheus.Histogram
}

// NewStore returns a store's metrics, registered on reg.
func NewStore(reg prometheus.Registerer) *Store {
	m := &Store{fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sluice_fsync_seconds", Help: "Time of each fsync, or syncfs of the data directory, of the streams' writes.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})}
	reg.MustRegister(m.fsync)
	return m
}

// Fsynced observes an fsync.
func (m *Store) Fsynced(took time.Duration) { m.fsync.Observe(took.Seconds()) }

// RegisterDiskBytes registers sluice_disk_bytes, the bytes of the streams' live copies
// on disk, which bytes reports at each scrape (file.Store.DiskBytes).
func RegisterDiskBytes(reg prometheus.Registerer, bytes func() int64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_disk_bytes", Help: "Bytes of the streams' live copies on disk.",
	}, func() float64 { return float64(bytes()) }))
}

// RegisterBuildInfo registers sluice_build_info, 1 with the running version as a
// label, so that a dashboard tells which version each instance runs.
func RegisterBuildInfo(reg prometheus.Registerer, version string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_build_info", Help: "Always 1; the version is a label.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	reg.MustRegister(g)
}
