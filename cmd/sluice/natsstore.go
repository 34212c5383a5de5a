package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
	sluicenats "github.com/sluicehq/sluice/nats"
)

// natsFlags are how sluice serve reaches NATS JetStream in cluster mode; with no URLs
// the local file store is used.
type natsFlags struct {
	URLs     string        `name:"nats" placeholder:"URLS" help:"Comma-separated NATS URLs (nats://host:4222,...): store streams in JetStream, shared by every instance using the same cluster (cluster mode); empty uses --data-dir."`
	Creds    string        `name:"nats-creds" placeholder:"FILE" help:"NATS credentials file (JWT and NKey seed)."`
	TLSCA    string        `name:"nats-tls-ca" placeholder:"FILE" help:"File of CA certificates to verify NATS servers."`
	TLSCert  string        `name:"nats-tls-cert" placeholder:"FILE" help:"Client certificate file for NATS (with --nats-tls-key)."`
	TLSKey   string        `name:"nats-tls-key" placeholder:"FILE" help:"Client key file for NATS."`
	Replicas int           `name:"nats-replicas" default:"0" placeholder:"N" help:"JetStream replicas of the streams; 0 means 3 when the cluster has at least three servers, else 1."`
	Linger   time.Duration `name:"nats-linger" default:"5ms" placeholder:"TIME" help:"Time a small write to a busy stream is held after it is stored, while the producer's next lines gather, so that a producer writing a line at a time makes fewer, larger JetStream messages; 0 for none."`
	Name     string        `name:"nats-name" default:"sluice" placeholder:"NAME" help:"Connection name shown in NATS monitoring."`
}

// open connects to NATS and opens the JetStream store; close ends both.
func (c *natsFlags) open(ctx context.Context, opts sluicenats.Options, log *slog.Logger) (*sluicenats.Store, func(), error) {
	no := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1), // an instance outlives any one NATS node
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
	}
	if c.Creds != "" {
		no = append(no, nats.UserCredentials(c.Creds))
	}
	if c.TLSCA != "" {
		no = append(no, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		no = append(no, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	nc, err := nats.Connect(c.URLs, no...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", c.URLs, err)
	}
	opts.Replicas, opts.Linger, opts.Logger = c.Replicas, c.Linger, log
	if c.Linger <= 0 {
		opts.Linger = -1 // the store's zero value is its default
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := sluicenats.Open(octx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return s, func() { s.Close(); nc.Close() }, nil
}

// serveCluster is sluice serve in cluster mode: the same HTTP server over the JetStream
// store, so that every instance serves every stream.
func serveCluster(ctx context.Context, c *serveCmd, reg *prometheus.Registry, log *slog.Logger) error {
	// Every instance must read what any other archived, so the default archive (a
	// directory under --data-dir) is off here: name a shared one (s3://, or file:// on a
	// shared file system) to archive.
	var archive sluice.Archive
	if c.Archive.URL != "" && c.Archive.URL != "off" {
		var err error
		if archive, err = c.Archive.open(c.DataDir); err != nil {
			return err
		}
	}
	opts := sluicenats.Options{
		MaxStreamSize: c.MaxStreamSize, MaxOpenStreams: c.MaxOpenStreams, TailSize: c.TailSize,
		IdleClose: c.IdleClose, Archive: archive, ArchiveMaxAge: c.Archive.MaxAge,
	}
	store, closeNATS, err := c.Nats.open(ctx, opts, log)
	if err != nil {
		return err
	}
	defer closeNATS()
	// Of the instances, the one holding a stream's lease archives it; each lists the
	// store every minute to take over the streams of one that died.
	ao := sluice.ArchiverOptions{Leaser: store, Rescan: time.Minute}
	return serveStore(ctx, c, store, archive, ao, reg, log, "nats", c.Nats.URLs, "archive", archive != nil)
}
