// Package nats is Sluice's clustered store: streams kept in NATS JetStream, so that
// several `sluice serve` instances behind a load balancer serve every stream.
//
// Layout in JetStream:
//
//	stream  SLUICE (file storage, Options.Replicas), subjects sluice.data.>
//	        one subject per Sluice stream, sluice.data.<token>.<version>, where token is
//	        the hex SHA-256 of the key (never the key: keys may be secret, and need not
//	        be valid subject tokens) and version is the stream's Info.Version, so that a
//	        key reused after a purge writes to a fresh subject that no stale writer knows.
//	        Each message is a chunk of the stream's bytes with the header Sluice-Offset
//	        (its first byte's offset); a close is an empty message with Sluice-Close, and
//	        a purge leaves an empty message with Sluice-Purge (with a TTL) that stale
//	        handles and followers on other instances see.
//	bucket  sluice_meta (KV): <token> -> {"key","version"}, written once by Create, read
//	        from the bucket's leader (direct gets off), so that a stream created through
//	        one instance is known at once to every other.
//	stream  SLUICE_OPEN, subjects sluice.data-open.<token>.<version>: one empty message
//	        per open stream, removed when it closes or is purged, so that JetStream itself
//	        enforces Options.MaxOpenStreams across all instances (MaxMsgs, DiscardNew).
//
// The length and state of a stream are those of its subject's last message, so, as in
// the file store, there is no second record that could disagree with the bytes.
//
// One writer at a time: every publish expects the subject's last sequence to be the one
// the writer knows (Nats-Expected-Last-Subject-Sequence). A writer that lost a race
// re-reads the subject's last message, learns the true length, and applies the same
// overlap/gap rules as any append, so two instances never interleave or double bytes;
// a publish retried after a timeout is safe for the same reason.
//
// Resuming at an offset needs no scan and no extra index: the offset header plus the
// server's "next message of this subject at or after sequence n" lookup allow a binary
// search over stream sequences, O(log n) fetches.
package nats

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/closelog"
)

// Options tune a Store. Zero values mean the defaults named on each field.
type Options struct {
	// Stream is the JetStream stream's name ("SLUICE"); Bucket the KV bucket's
	// ("sluice_meta"); Prefix the subjects' ("sluice.data").
	Stream, Bucket, Prefix string
	// Replicas is the replica count of the stream and bucket; 0 means 3 when the client
	// knows of at least three servers, else 1.
	Replicas int
	// MaxStreamSize is the largest length a stream may reach; 0 means no limit.
	MaxStreamSize int64
	// ChunkSize is the largest message payload (256 KiB), kept below the server's max
	// payload with room for headers.
	ChunkSize int
	// Linger is how long the Append of a small write to a busy stream is held after its
	// bytes are stored (5ms; negative: never), so that a producer writing a line at a
	// time makes chunks of the lines written meanwhile rather than a JetStream message
	// per line. See stream.linger.
	Linger time.Duration
	// MaxOpenStreams is how many open (not closed) streams may exist in the cluster; 0
	// means no limit. Every instance should be given the same value: the last one
	// started sets it for all.
	MaxOpenStreams int
	// TailSize is how many recent bytes of a followed stream are kept in memory (1 MiB).
	TailSize int
	// IdleClose, if positive, closes the open streams that nobody wrote to for that
	// long, at the sweep.
	IdleClose time.Duration
	// ArchiveMaxAge, if positive, purges archived streams (their archived object with
	// them) once their archive is that old, at the sweep.
	ArchiveMaxAge time.Duration
	// SweepInterval is how often the streams past their expiry (and idle ones, and old
	// archives) are looked for (1m); every Open checks expiry too.
	SweepInterval time.Duration
	// RequestTimeout bounds one request to JetStream (2s). Requests are retried within
	// the caller's context, since a stream without a leader drops them silently.
	RequestTimeout time.Duration
	// Logger receives errors of background work; nil means slog.Default().
	Logger *slog.Logger
	// Archive, if set, holds the bytes of archived streams whose live copy was removed
	// (see RemoveLive): they are read from it, and purged from it with their stream.
	Archive sluice.Archive
}

// Store keeps streams in JetStream. It implements sluice.Store.
type Store struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	js1  jetstream.Stream
	open jetstream.Stream // the open streams' markers
	kv   jetstream.KeyValue
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	streams   map[string]*stream // streams with live handles, by key
	bySubject map[string]*stream // the same, by subject, for the subscription

	fetches  atomic.Int64 // messages fetched by sequence, for tests and metrics
	lastOpen atomic.Int64 // the last count of OpenStreams

	id     string       // names this instance in archive leases
	closes closelog.Log // streams closed here, for the Archiver (Notify, ClosedSince)

	stop, done chan struct{}            // end the sweep, and tell it ended
	sub        jetstream.ConsumeContext // every stream's messages, for the streams held here
}

var _ sluice.Store = (*Store)(nil)

// Open sets up (or joins) the JetStream stream and KV bucket over nc and returns a Store.
// The caller keeps ownership of nc.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.setDefaults(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats store: %w", err)
	}
	s := &Store{
		nc: nc, js: js, opts: opts, log: opts.Logger,
		streams: make(map[string]*stream), bySubject: make(map[string]*stream),
		id: newVersion(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := s.setUp(ctx); err != nil {
		return nil, fmt.Errorf("nats store: %w", err)
	}
	if err := s.follow(ctx); err != nil {
		return nil, fmt.Errorf("nats store: %w", err)
	}
	go s.sweepLoop()
	return s, nil
}

func (o *Options) setDefaults(nc *nats.Conn) {
	if o.Stream == "" {
		o.Stream = "SLUICE"
	}
	if o.Bucket == "" {
		o.Bucket = "sluice_meta"
	}
	if o.Prefix == "" {
		o.Prefix = "sluice.data"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
		if len(nc.Servers()) >= 3 {
			o.Replicas = 3
		}
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 256 << 10
	}
	// Headers count towards the server's limit too: 4 KiB leaves them ample room.
	o.ChunkSize = max(1, min(o.ChunkSize, int(nc.MaxPayload())-4<<10))
	if o.Linger == 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.TailSize <= 0 {
		o.TailSize = 1 << 20
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Minute
	}
}

// setUp creates (or updates) the store's JetStream streams and opens its bucket.
func (s *Store) setUp(ctx context.Context) error {
	maxOpen := int64(s.opts.MaxOpenStreams)
	if maxOpen <= 0 {
		maxOpen = -1
	}
	for _, sc := range []struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&s.js1, jetstream.StreamConfig{
			Name:              s.opts.Stream,
			Subjects:          []string{s.opts.Prefix + ".>"},
			Storage:           jetstream.FileStorage,
			Replicas:          s.opts.Replicas,
			AllowMsgTTL:       true,
			MaxMsgsPerSubject: -1,
			// A Write of more than a chunk, or with its writers' state, goes in one
			// atomic batch (stream.putAll); the state's subject keeps its last message.
			AllowAtomicPublish: true,
			AllowRollup:        true,
		}},
		{&s.open, jetstream.StreamConfig{
			Name:     s.opts.Stream + "_OPEN",
			Subjects: []string{s.opts.Prefix + "-open.>"},
			Storage:  jetstream.FileStorage,
			Replicas: s.opts.Replicas,
			MaxMsgs:  maxOpen,
			Discard:  jetstream.DiscardNew,
		}},
	} {
		err := s.retry(ctx, func(ctx context.Context) error {
			var err error
			*sc.dst, err = s.js.CreateOrUpdateStream(ctx, sc.cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.cfg.Name, err)
		}
	}
	if err := s.retry(ctx, s.openBucket); err != nil {
		return fmt.Errorf("bucket %s: %w", s.opts.Bucket, err)
	}
	return nil
}

// openBucket opens the meta bucket, creating it if need be, with direct gets off. A
// direct get may be answered by any replica, including one that has not yet applied a
// write acknowledged a moment ago (nats-server issue 6557): a stream just created
// through one instance would be unknown to another for a while. Without direct gets,
// reads go to the bucket's leader, which has applied every acknowledged write. The
// jetstream package always creates buckets with direct gets on (and so did earlier
// versions of Sluice), so they are turned off here, on an existing bucket too; the
// client chooses how to read from the configuration it sees when the bucket is opened.
func (s *Store) openBucket(ctx context.Context) error {
	name := "KV_" + s.opts.Bucket
	st, err := s.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: s.opts.Bucket, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return err
		}
		st, err = s.js.Stream(ctx, name)
	}
	if err != nil {
		return err
	}
	if cfg := st.CachedInfo().Config; cfg.AllowDirect || cfg.Replicas != s.opts.Replicas {
		cfg.AllowDirect, cfg.Replicas = false, s.opts.Replicas
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			return err
		}
	}
	s.kv, err = s.js.KeyValue(ctx, s.opts.Bucket)
	return err
}

// retry runs f with a short deadline per attempt until it succeeds, fails for good, or
// ctx ends: while a stream elects a leader its requests vanish without an answer, and
// a long deadline would only make the caller wait longer.
func (s *Store) retry(ctx context.Context, f func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		err := f(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if !backoff.Sleep(ctx, wait) {
			return err
		}
		wait = min(wait*2, time.Second)
	}
}

// errCodeStoreFailed is JetStream's "storing a message failed", a 503 that retrying
// does not cure: a limit such as MaxMsgs with DiscardNew, or a full disk.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// transient reports whether err may go away by itself: a timeout, no responders, or a
// cluster without a leader for the moment.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode != errCodeStoreFailed &&
			(apiErr.Code == 503 || apiErr.Code == 408 || apiErr.Code == 500)
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// wrongLastSeq reports whether a publish lost the race for the subject's next sequence.
// Replicated streams answer 10164 where a single replica answers 10071.
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// token names a stream in subjects and KV keys after a hash of its key, so that no key,
// however crafted, is a subject wildcard or leaks through monitoring.
func token(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

type meta struct {
	Key     string        `json:"key"`
	Version string        `json:"version"`
	Config  sluice.Config `json:"config,omitzero"`
	// Archived is set once the stream's archive is confirmed, and Removed once its
	// live bytes are gone, so that it is read from the archive.
	Archived *sluice.ArchiveRecord `json:"archived,omitempty"`
	Removed  bool                  `json:"removed,omitempty"`
	// Created is when the stream was made, and Access when it was last read or written
	// (kept for streams with a TTL, at the release of an instance's last handle).
	Created time.Time `json:"created,omitzero"`
	Access  time.Time `json:"access,omitzero"`
	// Refs is how many forks read the stream; Deleted is set once it was deleted while
	// some did (soft-deleted).
	Refs    int  `json:"refs,omitempty"`
	Deleted bool `json:"deleted,omitempty"`
}

func (s *Store) subject(key, version string) string {
	return s.opts.Prefix + "." + token(key) + "." + version
}

// Create makes a stream: its open marker first, which JetStream refuses beyond
// MaxOpenStreams, then its first bytes and close marker on its new subject, which
// nobody reads before the stream exists, then its meta entry, with a create-only KV
// put so that of several instances creating one key, exactly one reports created. So
// the stream appears whole, or not at all. The marker and the subject name the new
// version, which nobody knows before the meta entry exists, so a create that loses the
// race removes its own marker and bytes and nobody else's.
func (s *Store) Create(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error) {
	// Most creates come with a publish to a stream that exists: one read answers them.
	if info, err := s.existing(ctx, key, opts); !errors.Is(err, sluice.ErrNotFound) {
		return info, false, err
	}
	if max := s.opts.MaxStreamSize; max > 0 && int64(len(opts.Data)) > max {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w (limit %d bytes)", key, sluice.ErrTooLarge, max)
	}
	if f := opts.Config.Fork; f != nil {
		if err := s.checkSource(ctx, f); err != nil {
			return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
		}
	}
	info, created, err := s.create(ctx, key, opts)
	if !created && opts.Config.Fork != nil {
		s.unref(context.WithoutCancel(ctx), opts.Config.Fork)
	}
	return info, created, err
}

// create makes the stream of key, which did not exist a moment ago.
func (s *Store) create(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error) {
	m := meta{Key: key, Version: newVersion(), Config: opts.Config, Created: time.Now()}
	if !opts.Closed {
		if err := s.mark(ctx, key, m.Version); err != nil {
			return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
		}
	}
	base := int64(0)
	if f := opts.Config.Fork; f != nil {
		base = f.Base
	}
	info := sluice.Info{Length: base + int64(len(opts.Data)), Closed: opts.Closed, Version: m.Version, Config: opts.Config}
	created, err := s.createMeta(ctx, m, opts)
	if !created {
		s.unmark(ctx, key, m.Version)
		s.dropSubject(ctx, key, m.Version)
	}
	if err != nil {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
	}
	if !created {
		info, err := s.existing(ctx, key, opts)
		return info, false, err
	}
	if opts.Closed {
		s.closes.Add(key)
	}
	return info, true, nil
}

// existing returns the Info of the stream of key, if it exists, and ErrConfigMismatch
// if opts do not match it (see sluice.Store.Create).
func (s *Store) existing(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, error) {
	st, err := s.Open(ctx, key)
	if err != nil {
		return sluice.Info{}, fmt.Errorf("create %w", err)
	}
	info := st.Info()
	st.Release()
	if !info.Config.Matches(opts.Config) || info.Closed != opts.Closed {
		return info, fmt.Errorf("create %s: %w", key, sluice.ErrConfigMismatch)
	}
	return info, nil
}

// createMeta stores a new stream's first bytes and close on its subject, then its meta
// entry; it reports whether the entry is this create's.
func (s *Store) createMeta(ctx context.Context, m meta, opts sluice.CreateOptions) (bool, error) {
	if len(opts.Data) > 0 || opts.Closed {
		st := newStream(s, m.Key, m.Version, m.Config)
		if _, err := st.putAll(ctx, 0, st.base, opts.Data, opts.Closed, nil); err != nil {
			return false, err
		}
	}
	b, _ := json.Marshal(m)
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Create(ctx, token(m.Key), b)
		return err
	})
	if err == nil {
		return true, nil
	}
	// A create retried after a lost answer may have succeeded: the entry is ours if it
	// holds our version.
	if cur, _, gerr := s.meta(ctx, m.Key); gerr == nil && cur.Version == m.Version {
		return true, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	return false, err
}

// dropSubject deletes the bytes of a stream's version that never came to exist.
func (s *Store) dropSubject(ctx context.Context, key, version string) {
	err := s.retry(context.WithoutCancel(ctx), func(ctx context.Context) error {
		return s.js1.Purge(ctx, jetstream.WithPurgeSubject(s.subject(key, version)+".>"))
	})
	if err == nil {
		err = s.retry(context.WithoutCancel(ctx), func(ctx context.Context) error {
			return s.js1.Purge(ctx, jetstream.WithPurgeSubject(s.subject(key, version)))
		})
	}
	if err != nil {
		s.log.Error("nats store: bytes of a stream never created left behind", "key", key, "err", err)
	}
}

func (s *Store) markSubject(key, version string) string {
	return s.opts.Prefix + "-open." + token(key) + "." + version
}

// mark publishes the open marker of a stream's version: ErrTooManyStreams when the
// cluster holds as many as its limit (MaxMsgs of the markers' stream, DiscardNew).
func (s *Store) mark(ctx context.Context, key, version string) error {
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.js.Publish(ctx, s.markSubject(key, version), nil)
		return err
	})
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		strings.Contains(apiErr.Description, "maximum messages") {
		return fmt.Errorf("%w (limit %d)", sluice.ErrTooManyStreams, s.opts.MaxOpenStreams)
	}
	return err
}

// unmark removes the open marker of a stream's version, freeing its place, even if
// the caller's context has just ended: a place left taken is never given back. A
// failure is logged.
func (s *Store) unmark(ctx context.Context, key, version string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := s.retry(ctx, func(ctx context.Context) error {
		return s.open.Purge(ctx, jetstream.WithPurgeSubject(s.markSubject(key, version)))
	})
	if err != nil {
		s.log.Error("nats store: open stream marker left behind", "key", key, "err", err)
	}
}

// meta reads the stream's meta entry and its revision.
func (s *Store) meta(ctx context.Context, key string) (meta, uint64, error) {
	var e jetstream.KeyValueEntry
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		e, err = s.kv.Get(ctx, token(key))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return meta{}, 0, fmt.Errorf("%s: %w", key, sluice.ErrNotFound)
	}
	if err != nil {
		return meta{}, 0, fmt.Errorf("%s: meta: %w", key, err)
	}
	var m meta
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return meta{}, 0, fmt.Errorf("%s: meta: %w", key, err)
	}
	return m, e.Revision(), nil
}

// Ready reports whether the store can serve: connected to NATS, and JetStream answers
// for its stream.
func (s *Store) Ready(ctx context.Context) error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats: %v", st)
	}
	if _, err := s.js1.Info(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// OpenStreams reports how many streams are open (not closed) in the whole cluster: the
// open markers JetStream holds. It asks the server, within a second, and reports the
// last count it got if the server does not answer.
func (s *Store) OpenStreams() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := s.open.Info(ctx)
	if err != nil {
		s.log.Warn("nats store: count open streams", "err", err)
		return int(s.lastOpen.Load())
	}
	s.lastOpen.Store(int64(info.State.Msgs))
	return int(info.State.Msgs)
}

func newVersion() string {
	b := make([]byte, 4)
	rand.Read(b)
	return strconv.FormatInt(time.Now().UnixNano(), 36) + hex.EncodeToString(b)
}
