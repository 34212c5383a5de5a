package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice"
	sluicenats "github.com/sluicehq/sluice/nats"
)

// natsConfig is how sluice serve reaches NATS JetStream in cluster mode; with no URLs
// the local file store is used, as before.
type natsConfig struct {
	urls, creds, name      string
	tlsCA, tlsCert, tlsKey string
	replicas               int
	linger                 time.Duration
}

func natsFlags(fs *flag.FlagSet, c *natsConfig) {
	fs.StringVar(&c.urls, "nats", "", "comma-separated NATS `URLs` (nats://host:4222,...): store streams in JetStream, shared by every instance using the same cluster (cluster mode); empty uses --data-dir")
	fs.StringVar(&c.creds, "nats-creds", "", "NATS credentials `file` (JWT and NKey seed)")
	fs.StringVar(&c.tlsCA, "nats-tls-ca", "", "`file` of CA certificates to verify NATS servers")
	fs.StringVar(&c.tlsCert, "nats-tls-cert", "", "client certificate `file` for NATS (with --nats-tls-key)")
	fs.StringVar(&c.tlsKey, "nats-tls-key", "", "client key `file` for NATS")
	fs.IntVar(&c.replicas, "nats-replicas", 0, "JetStream replicas of the streams (`count`); 0 means 3 when the cluster has at least three servers, else 1")
	fs.DurationVar(&c.linger, "nats-linger", 5*time.Millisecond, "`time` a small write to a busy stream is held after it is stored, while the producer's next lines gather, so that a producer writing a line at a time makes fewer, larger JetStream messages; 0 for none")
	fs.StringVar(&c.name, "nats-name", "sluice", "connection `name` shown in NATS monitoring")
}

// open connects to NATS and opens the JetStream store; close ends both.
func (c *natsConfig) open(ctx context.Context, opts sluicenats.Options, log *slog.Logger) (*sluicenats.Store, func(), error) {
	no := []nats.Option{
		nats.Name(c.name),
		nats.MaxReconnects(-1), // an instance outlives any one NATS node
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
	}
	if c.creds != "" {
		no = append(no, nats.UserCredentials(c.creds))
	}
	if c.tlsCA != "" {
		no = append(no, nats.RootCAs(c.tlsCA))
	}
	if c.tlsCert != "" || c.tlsKey != "" {
		no = append(no, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	nc, err := nats.Connect(c.urls, no...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", c.urls, err)
	}
	opts.Replicas, opts.Linger, opts.Logger = c.replicas, c.linger, log
	if c.linger <= 0 {
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
func serveCluster(ctx context.Context, c *serveConfig, log *slog.Logger) error {
	// Every instance must read what any other archived, so the default archive (a
	// directory under --data-dir) is off here: name a shared one (s3://, or file:// on a
	// shared file system) to archive.
	var archive sluice.Archive
	if c.archive.url != "" && c.archive.url != "off" {
		var err error
		if archive, err = c.archive.open(c.dataDir); err != nil {
			return err
		}
	}
	opts := sluicenats.Options{
		MaxStreamSize: c.maxStreamSize, MaxOpenStreams: c.maxOpenStreams, TailSize: c.tailSize,
		Archive: archive,
	}
	store, closeNATS, err := c.nats.open(ctx, opts, log)
	if err != nil {
		return err
	}
	defer closeNATS()
	// Of the instances, the one holding a stream's lease archives it; each lists the
	// store every minute to take over the streams of one that died.
	ao := sluice.ArchiverOptions{Leaser: store, Rescan: time.Minute}
	return serveStore(ctx, c, store, archive, ao, log, "nats", c.nats.urls, "archive", archive != nil)
}
