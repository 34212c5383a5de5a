// Package file is Sluice's embedded store: streams kept in a directory on local disk.
//
// Each stream lives in a directory named after the SHA-256 of its key (never after the
// key itself), streams/<2 hex>/<64 hex>/, holding:
//
//	meta.json  the key and a version, written once, atomically, when the stream is created
//	data       the stream's bytes, exactly as published
//	closed     present once the stream is closed
//	archived   present once the stream is archived (see archived.go); the data file
//	           may then be removed, and the stream is read from Options.Archive
//
// The length of a stream is the size of its data file, so there is no second record that
// a crash could leave out of step with the bytes.
//
// Durability: every append reaches the kernel (write(2)) before it is acknowledged, so
// nothing acknowledged is lost when the process dies, even by SIGKILL. Against power loss,
// appended bytes are fsynced within Options.SyncInterval of their acknowledgement (or before
// it, when SyncInterval is 0), and a close is fsynced, data and marker, before it is
// acknowledged.
//
// Followers of an active stream read recent bytes from a shared in-memory tail of
// immutable blocks, and older bytes from the data file, so a follower costs no copy of the
// stream and a lagging one just reads the disk at its own pace.
package file

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/closelog"
	"github.com/sluicehq/sluice/internal/tail"
)

// Options tune a Store. The zero value is valid: fsync on every append, no limits, and
// the default tail.
type Options struct {
	// SyncInterval is how long acknowledged bytes may wait for fsync. Zero fsyncs every
	// append before acknowledging it.
	SyncInterval time.Duration
	// MaxStreamSize is the largest length a stream may reach, in bytes; 0 means no limit.
	MaxStreamSize int64
	// MaxOpenStreams is how many open (not closed) streams may exist; 0 means no limit.
	MaxOpenStreams int
	// TailSize is how many recent bytes of a followed stream are kept in memory for its
	// followers; 0 means DefaultTailSize.
	TailSize int
	// Logger receives errors of background syncing; nil means slog.Default().
	Logger *slog.Logger
	// Archive, if set, holds the bytes of archived streams whose live copy was removed
	// (see RemoveLive): they are read from it, and purged from it with their stream.
	Archive sluice.Archive
}

// DefaultTailSize is the default for Options.TailSize.
const DefaultTailSize = 1 << 20

// Store keeps streams under a directory. It implements sluice.Store.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream // streams with live handles, by key
	dirty   map[*stream]bool   // streams with bytes not yet fsynced
	open    int                // streams on disk that are not closed

	closes closelog.Log // streams closed, for the Archiver (Notify, ClosedSince)

	stop chan struct{}
	done chan struct{}
}

var _ sluice.Store = (*Store)(nil)

// Open opens (creating it if needed) the store under dir. It counts the open streams,
// finishes purges that a crash interrupted, and starts syncing in the background until
// Close.
func Open(dir string, opts Options) (*Store, error) {
	if opts.TailSize <= 0 {
		opts.TailSize = DefaultTailSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		dir:     dir,
		opts:    opts,
		log:     opts.Logger,
		streams: make(map[string]*stream),
		dirty:   make(map[*stream]bool),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, d := range []string{s.path("streams"), s.path("trash")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("file store: %w", err)
		}
	}
	if err := os.RemoveAll(s.path("trash")); err != nil {
		return nil, fmt.Errorf("file store: empty trash: %w", err)
	}
	if err := os.MkdirAll(s.path("trash"), 0o755); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	n, err := s.countOpen()
	if err != nil {
		return nil, fmt.Errorf("file store: scan %s: %w", dir, err)
	}
	s.open = n
	go s.syncLoop()
	return s, nil
}

// Close stops background syncing and fsyncs every stream that needs it. Callers release
// their handles first: appends made after Close are not fsynced in the background.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	return s.syncAll()
}

// OpenStreams reports how many streams are open (not closed).
func (s *Store) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// streamDir names a stream's directory after a hash of its key, so that no key, however
// crafted, names a path of its choosing.
func (s *Store) streamDir(key string) string {
	h := sha256.Sum256([]byte(key))
	x := hex.EncodeToString(h[:])
	return s.path("streams", x[:2], x)
}

type meta struct {
	Key     string        `json:"key"`
	Version string        `json:"version"`
	Config  sluice.Config `json:"config,omitzero"`
}

// Create makes a stream, atomically: its directory appears complete, with its meta
// file, its first bytes and its closed marker, or not at all.
func (s *Store) Create(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error) {
	dir := s.streamDir(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		info, err := s.existing(key)
		if err == nil && (!info.Config.Matches(opts.Config) || info.Closed != opts.Closed) {
			err = fmt.Errorf("create %s: %w", key, sluice.ErrConfigMismatch)
		}
		return info, false, err
	}
	if s.opts.MaxOpenStreams > 0 && !opts.Closed && s.open >= s.opts.MaxOpenStreams {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w (limit %d)", key, sluice.ErrTooManyStreams, s.opts.MaxOpenStreams)
	}
	if max := s.opts.MaxStreamSize; max > 0 && int64(len(opts.Data)) > max {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w (limit %d bytes)", key, sluice.ErrTooLarge, max)
	}
	m := meta{Key: key, Version: strconv.FormatInt(time.Now().UnixNano(), 36) + randHex(4), Config: opts.Config}
	if err := s.makeDir(dir, m, opts); err != nil {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
	}
	if opts.Closed {
		s.closes.Add(key)
	} else {
		s.open++
	}
	return sluice.Info{Length: int64(len(opts.Data)), Closed: opts.Closed, Version: m.Version, Config: opts.Config}, true, nil
}

// makeDir writes a new stream's directory in the trash, fsynced, and renames it into
// place at dir.
func (s *Store) makeDir(dir string, m meta, opts sluice.CreateOptions) error {
	tmp, err := os.MkdirTemp(s.path("trash"), "new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	b, _ := json.Marshal(m)
	if err := writeFileSync(filepath.Join(tmp, "meta.json"), b); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, "data"), opts.Data); err != nil {
		return err
	}
	if opts.Closed {
		if err := writeFileSync(filepath.Join(tmp, "closed"), nil); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// existing returns the Info of a stream that exists; the caller holds s.mu.
func (s *Store) existing(key string) (sluice.Info, error) {
	if st := s.streams[key]; st != nil {
		return st.snap.Load().Info, nil
	}
	st, err := s.load(key)
	if err != nil {
		return sluice.Info{}, err
	}
	if st.f != nil {
		st.f.Close()
	}
	return st.snap.Load().Info, nil
}

// Open returns a handle on an existing stream. Streams with live handles are shared, so
// that all followers of a stream read one tail.
func (s *Store) Open(ctx context.Context, key string) (sluice.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		var err error
		if st, err = s.load(key); err != nil {
			return nil, err
		}
		s.streams[key] = st
	}
	st.refs++
	return &handle{st: st}, nil
}

// load reads a stream's state from disk. The caller holds s.mu.
func (s *Store) load(key string) (*stream, error) {
	dir := s.streamDir(key)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", key, sluice.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("open %s: meta: %w", key, err)
	}
	_, err = os.Stat(filepath.Join(dir, "closed"))
	closed := err == nil
	flag := os.O_RDWR
	if closed {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), flag, 0)
	if closed && errors.Is(err, fs.ErrNotExist) {
		return s.loadArchived(key, dir, m)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	st := &stream{store: s, key: key, dir: dir, f: f}
	sn := tail.New(sluice.Info{Length: fi.Size(), Closed: closed, Version: m.Version, Config: m.Config})
	st.snap.Store(&sn)
	return st, nil
}

// Purge moves the stream's directory to the trash, atomically, then deletes it, so a
// crash mid-purge never leaves half a stream under its key.
func (s *Store) Purge(ctx context.Context, key string) error {
	dir := s.streamDir(key)
	if err := s.purgeArchived(ctx, key); err != nil {
		return err
	}
	s.mu.Lock()
	_, err := os.Stat(filepath.Join(dir, "closed"))
	closed := err == nil
	trash := s.path("trash", "purged-"+randHex(8))
	if err := os.Rename(dir, trash); err != nil {
		s.mu.Unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("purge %s: %w", key, sluice.ErrNotFound)
		}
		return fmt.Errorf("purge %s: %w", key, err)
	}
	st := s.streams[key]
	if st != nil {
		delete(s.streams, key)
		delete(s.dirty, st)
	}
	if !closed {
		s.open--
	}
	s.mu.Unlock()
	if st != nil {
		st.purge() // outside s.mu: stream locks are taken before the store's, never after
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}

// release drops one reference to st, closing its file with the last one.
func (s *Store) release(st *stream) {
	s.mu.Lock()
	st.refs--
	last := st.refs == 0
	dirty := s.dirty[st]
	if last {
		delete(s.dirty, st)
		if s.streams[st.key] == st {
			delete(s.streams, st.key)
		}
	}
	s.mu.Unlock()
	if !last {
		return
	}
	if dirty {
		if err := st.f.Sync(); err != nil {
			s.log.Error("fsync stream", "key", st.key, "err", err)
		}
	}
	if st.f != nil { // nil for a stream read from the archive
		st.f.Close()
	}
}

// markDirty records that st has bytes to fsync; the caller holds st.mu, never s.mu. Only
// the first append after each sync takes the store's lock.
func (s *Store) markDirty(st *stream) {
	if st.dirty.Swap(true) {
		return
	}
	s.mu.Lock()
	s.dirty[st] = true
	s.mu.Unlock()
}

func (s *Store) syncLoop() {
	defer close(s.done)
	if s.opts.SyncInterval <= 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.syncAll(); err != nil {
				s.log.Error("fsync streams", "err", err)
			}
		}
	}
}

// syncAll fsyncs every dirty stream, holding a reference on each so that its file stays
// open, and without holding any lock during the fsync, so publishers never wait for it.
func (s *Store) syncAll() error {
	s.mu.Lock()
	var todo []*stream
	for st := range s.dirty {
		st.refs++
		todo = append(todo, st)
	}
	clear(s.dirty)
	s.mu.Unlock()
	var errs []error
	for _, st := range todo {
		st.dirty.Store(false) // before the fsync, which covers every write made so far
		if err := st.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", st.key, err))
		}
		s.release(st)
	}
	return errors.Join(errs...)
}

// countOpen counts the streams on disk that are not closed, and removes directories that
// a crash left without their meta file.
func (s *Store) countOpen() (int, error) {
	n := 0
	dirs, err := filepath.Glob(s.path("streams", "*", "*"))
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "meta.json")); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if err := os.RemoveAll(d); err != nil {
					return 0, err
				}
			}
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "closed")); errors.Is(err, fs.ErrNotExist) {
			n++
		}
	}
	return n, nil
}

func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
