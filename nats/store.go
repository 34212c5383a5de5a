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
//	bucket  sluice_meta (KV): <token> -> {"key","version"}, written once by Create.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
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
	// ChunkSize is the largest message payload (256 KiB), below the server's max payload.
	ChunkSize int
	// TailSize is how many recent bytes of a followed stream are kept in memory (1 MiB).
	TailSize int
	// RequestTimeout bounds one request to JetStream (2s). Requests are retried within
	// the caller's context, since a stream without a leader drops them silently.
	RequestTimeout time.Duration
	// Logger receives errors of background work; nil means slog.Default().
	Logger *slog.Logger
	// OnClose, if set, is called with the key of each stream closed through this Store
	// whose archive lease this Store took (an Archiver's Enqueue): of all instances,
	// one archives each stream. It must not block.
	OnClose func(key string)
	// Archive, if set, holds the bytes of archived streams whose live copy was removed
	// (see RemoveLive): they are read from it, and purged from it with their stream.
	Archive sluice.Archive
	// LeaseTTL is how long an instance holds the right to archive a stream (10m); once
	// it lapses unarchived (the instance died), ArchiveScan gives it to another.
	LeaseTTL time.Duration
	// ArchiveScan is how often closed streams without an archive are looked for, to
	// take over the work of a dead instance (OnClose is called for each); 0 means never.
	ArchiveScan time.Duration
}

// Store keeps streams in JetStream. It implements sluice.Store.
type Store struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	js1  jetstream.Stream
	kv   jetstream.KeyValue
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream // streams with live handles, by key

	fetches atomic.Int64 // messages fetched by sequence, for tests and metrics

	id         string // names this instance in archive leases
	stop, done chan struct{}
}

var _ sluice.Store = (*Store)(nil)

// Open sets up (or joins) the JetStream stream and KV bucket over nc and returns a Store.
// The caller keeps ownership of nc.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	if opts.Stream == "" {
		opts.Stream = "SLUICE"
	}
	if opts.Bucket == "" {
		opts.Bucket = "sluice_meta"
	}
	if opts.Prefix == "" {
		opts.Prefix = "sluice.data"
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
		if len(nc.Servers()) >= 3 {
			opts.Replicas = 3
		}
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 256 << 10
	}
	if opts.TailSize <= 0 {
		opts.TailSize = 1 << 20
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats store: %w", err)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 10 * time.Minute
	}
	s := &Store{
		nc: nc, js: js, opts: opts, log: opts.Logger, streams: make(map[string]*stream),
		id: newVersion(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		var err error
		s.js1, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:              opts.Stream,
			Subjects:          []string{opts.Prefix + ".>"},
			Storage:           jetstream.FileStorage,
			Replicas:          opts.Replicas,
			AllowMsgTTL:       true,
			MaxMsgsPerSubject: -1,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nats store: stream %s: %w", opts.Stream, err)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		var err error
		s.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: opts.Bucket, Storage: jetstream.FileStorage, Replicas: opts.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nats store: bucket %s: %w", opts.Bucket, err)
	}
	go s.scanLoop()
	return s, nil
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
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait = min(wait*2, time.Second)
	}
}

// transient reports whether err may go away by itself: a timeout, no responders, or a
// cluster without a leader for the moment.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.Code == 408 || apiErr.Code == 500
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
	Key     string `json:"key"`
	Version string `json:"version"`
	// Archived is set once the stream's archive is confirmed, and Removed once its
	// live bytes are gone, so that it is read from the archive.
	Archived *sluice.ArchiveRecord `json:"archived,omitempty"`
	Removed  bool                  `json:"removed,omitempty"`
}

func (s *Store) subject(key, version string) string {
	return s.opts.Prefix + "." + token(key) + "." + version
}

// Create writes the stream's meta entry with a create-only KV put, so that of several
// instances creating one key, exactly one reports created.
func (s *Store) Create(ctx context.Context, key string) (bool, error) {
	b, _ := json.Marshal(meta{Key: key, Version: newVersion()})
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Create(ctx, token(key), b)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		// A create retried after a lost answer may have succeeded: the entry is ours
		// if it holds our version.
		if m, _, gerr := s.meta(ctx, key); gerr == nil {
			var mine meta
			json.Unmarshal(b, &mine)
			return m.Version == mine.Version, nil
		}
		return false, fmt.Errorf("create %s: %w", key, err)
	}
	return true, nil
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

// Open returns a handle on an existing stream. Handles on one stream in this process
// share its state and its one subscription, so that followers cost JetStream nothing
// each. The shared state is brought up to date with the subject's last message, since
// other instances may have written since.
func (s *Store) Open(ctx context.Context, key string) (sluice.Stream, error) {
	m, _, err := s.meta(ctx, key)
	// A KV read may reach a replica that has not applied a create made a moment ago:
	// look again briefly before calling the stream unknown.
	for try := 0; errors.Is(err, sluice.ErrNotFound) && try < 5; try++ {
		time.Sleep(20 * time.Millisecond << try)
		m, _, err = s.meta(ctx, key)
	}
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	s.mu.Lock()
	st := s.streams[key]
	if st == nil || st.version != m.Version {
		st = newStream(s, key, m.Version)
		s.streams[key] = st
	}
	st.refs++
	s.mu.Unlock()
	if m.Removed {
		st.removed.Store(true)
	}
	if err := st.refresh(ctx); err != nil {
		s.release(st)
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if st.snap.Load().purged {
		s.release(st)
		return nil, fmt.Errorf("open %s: %w", key, sluice.ErrNotFound)
	}
	return &handle{st: st}, nil
}

// Purge frees the key first (its meta entry goes, so Create makes a new version on a
// new subject), then leaves a purge marker on the old subject, which ends followers and
// stale writers on every instance, then deletes the old subject's bytes, keeping only
// the marker, which expires on its own.
func (s *Store) Purge(ctx context.Context, key string) error {
	m, rev, err := s.meta(ctx, key)
	if err != nil {
		return fmt.Errorf("purge %w", err)
	}
	if err := s.purgeArchived(ctx, key); err != nil {
		return err
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		return s.kv.Purge(ctx, token(key), jetstream.LastRevision(rev))
	})
	if err != nil {
		if wrongLastSeq(err) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("purge %s: %w", key, sluice.ErrNotFound) // purged by another
		}
		return fmt.Errorf("purge %s: %w", key, err)
	}
	subj := s.subject(key, m.Version)
	msg := nats.NewMsg(subj)
	msg.Header.Set(hdrPurge, "1")
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(time.Hour))
		return err
	})
	if err != nil {
		return fmt.Errorf("purge %s: marker: %w", key, err)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		return s.js1.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeKeep(1))
	})
	if err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	s.mu.Lock()
	st := s.streams[key]
	if st != nil && st.version == m.Version {
		delete(s.streams, key)
	} else {
		st = nil
	}
	s.mu.Unlock()
	if st != nil {
		st.markPurged()
	}
	return nil
}

// release drops one reference to st, and its subscription with the last one.
func (s *Store) release(st *stream) {
	s.mu.Lock()
	st.refs--
	last := st.refs == 0
	if last && s.streams[st.key] == st {
		delete(s.streams, st.key)
	}
	s.mu.Unlock()
}

func newVersion() string {
	b := make([]byte, 4)
	rand.Read(b)
	return strconv.FormatInt(time.Now().UnixNano(), 36) + hex.EncodeToString(b)
}
