// Package file is Sluice's embedded store: streams kept in a directory on local disk.
//
// Each stream lives in a directory named after the SHA-256 of its key (never after the
// key itself), streams/<2 hex>/<64 hex>/, holding:
//
//	meta.json  the key, a version and the stream's Config, written once, atomically,
//	           when the stream is created, with its first bytes and its closed marker
//	data       the stream's own bytes, exactly as published (a fork's from its base on)
//	writers    the state of its writers (sluice.Writers), journalled with the bytes
//	           it guards (see writers.go); present once a writer used it
//	closed     present once the stream is closed
//	access     when a stream with a TTL was last read or written (see lifecycle.go)
//	refs       how many forks read the stream; deleted  present once it is deleted
//	           while forks still read it (soft-deleted)
//	archived   present once the stream is archived (see archived.go); the data file
//	           may then be removed, and the stream is read from Options.Archive
//
// The length of a stream is the size of its data file (plus a fork's base), so there
// is no second record that a crash could leave out of step with the bytes.
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
	"sync/atomic"
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
	// IdleClose, if positive, closes the open streams that nobody wrote to for that long
	// (at the sweep), so that they are archived and their producers' slots freed.
	IdleClose time.Duration
	// ArchiveMaxAge, if positive, purges archived streams (their archived object with
	// them) once their archive is that old, at the sweep: archived logs are kept that
	// long, then answer 404.
	ArchiveMaxAge time.Duration
	// SweepInterval is how often streams past their expiry (sluice.Config's TTL and
	// ExpiresAt) are deleted when nobody asks for them (1m); every access checks too.
	SweepInterval time.Duration
	// Logger receives errors of background syncing; nil means slog.Default().
	Logger *slog.Logger
	// Archive, if set, holds the bytes of archived streams whose live copy was removed
	// (see RemoveLive): they are read from it, and purged from it with their stream.
	Archive sluice.Archive
	// Metrics is told how long each fsync takes; nil means nothing is counted.
	Metrics Metrics
}

// Metrics is what a Store counts (package metrics implements it for Prometheus).
type Metrics interface {
	// Fsynced is told of each fsync (or syncfs, which covers the whole store) of the
	// streams' writes, and how long it took.
	Fsynced(took time.Duration)
}

type noMetrics struct{}

func (noMetrics) Fsynced(time.Duration) {}

// DefaultTailSize is the default for Options.TailSize.
const DefaultTailSize = 1 << 20

// Store keeps streams under a directory. It implements sluice.Store.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	streams  map[string]*stream       // streams with live handles, by key
	open     int                      // streams on disk that are not closed
	expiring map[string]bool          // keys of streams that have a TTL or an expiry
	purging  map[string]bool          // keys of streams being purged: they cannot be forked
	creating map[string]chan struct{} // keys being created, each closed when its create ends

	// dirty holds the streams with bytes not yet fsynced. It has a lock of its own, taken
	// after mu when both are, so that an append never waits for the store's lock.
	dirtyMu sync.Mutex
	dirty   map[*stream]bool

	syncer    *syncer      // makes writes durable (sync.go)
	closes    closelog.Log // streams closed, for the Archiver (Notify, ClosedSince)
	diskBytes atomic.Int64 // bytes of the streams' live copies on disk

	stop chan struct{}
	done sync.WaitGroup
}

var _ sluice.Store = (*Store)(nil)

// Open opens (creating it if needed) the store under dir. It counts the open streams,
// finishes purges that a crash interrupted, and starts syncing and sweeping expired
// streams in the background until Close.
func Open(dir string, opts Options) (*Store, error) {
	if opts.TailSize <= 0 {
		opts.TailSize = DefaultTailSize
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	s := &Store{
		dir:      dir,
		opts:     opts,
		log:      opts.Logger,
		streams:  make(map[string]*stream),
		dirty:    make(map[*stream]bool),
		expiring: make(map[string]bool),
		purging:  make(map[string]bool),
		creating: make(map[string]chan struct{}),
		stop:     make(chan struct{}),
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
	s.syncer = newSyncer(dir, opts.Metrics.Fsynced)
	if err := s.scan(); err != nil {
		return nil, fmt.Errorf("file store: scan %s: %w", dir, err)
	}
	s.done.Go(s.syncLoop)
	s.done.Go(s.sweepLoop)
	return s, nil
}

// Close stops background work and fsyncs every stream that needs it. Callers release
// their handles first: appends made after Close are not fsynced in the background.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.done.Wait()
	return s.syncAll()
}

// DiskBytes reports the bytes of the streams' live copies on disk (their data files).
func (s *Store) DiskBytes() int64 { return s.diskBytes.Load() }

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
	Created time.Time     `json:"created,omitzero"`
}

// Create makes a stream, atomically: its directory appears complete, with its meta
// file, its first bytes and its closed marker, or not at all. A stream past its expiry
// is deleted first, as if it were not there. A fork's source must exist, not be
// deleted, and be of the version the fork names; it counts the fork among its readers
// (refs) in the same step. The directory is written and made durable without the
// store's lock, the key reserved meanwhile (creating), so that a burst of creates
// shares its syncs and holds no open, release or append of another stream.
func (s *Store) Create(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error) {
	s.mu.Lock()
	info, reserved, err := s.reserve(ctx, key, opts)
	s.mu.Unlock()
	if !reserved {
		return info, false, err
	}
	m := meta{Key: key, Version: strconv.FormatInt(time.Now().UnixNano(), 36) + randHex(4), Config: opts.Config, Created: time.Now()}
	tmp, err := s.writeDir(m, opts)
	dir := s.streamDir(key)
	s.mu.Lock()
	if err == nil {
		err = s.placeLocked(tmp, dir, opts.Config.Fork)
	}
	s.createdLocked(key, opts, err)
	s.mu.Unlock()
	if err == nil {
		err = s.syncEntries(filepath.Dir(dir))
	}
	if err != nil {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
	}
	return sluice.Info{Length: base(opts.Config) + int64(len(opts.Data)), Closed: opts.Closed, Version: m.Version, Config: opts.Config}, true, nil
}

// reserve checks that key can be created and reserves it, counted among the open
// streams if it is one, once no other create of it is in flight. Else it returns the
// Info of the stream of key that exists already, or why key cannot be created. The
// caller holds s.mu, which reserve lets go while it waits.
func (s *Store) reserve(ctx context.Context, key string, opts sluice.CreateOptions) (existing sluice.Info, reserved bool, err error) {
	for done := s.creating[key]; done != nil; done = s.creating[key] {
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			s.mu.Lock()
			return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, ctx.Err())
		}
		s.mu.Lock()
	}
	if exists(s.streamDir(key)) {
		info, err := s.existing(key)
		if errors.Is(err, errExpired) {
			err = s.expireLocked(key)
		}
		if err == nil && (!info.Config.Matches(opts.Config) || info.Closed != opts.Closed) {
			err = fmt.Errorf("create %s: %w", key, sluice.ErrConfigMismatch)
		}
		if err == nil || !errors.Is(err, sluice.ErrNotFound) {
			return info, false, err
		}
	}
	if s.opts.MaxOpenStreams > 0 && !opts.Closed && s.open >= s.opts.MaxOpenStreams {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w (limit %d)", key, sluice.ErrTooManyStreams, s.opts.MaxOpenStreams)
	}
	if max := s.opts.MaxStreamSize; max > 0 && int64(len(opts.Data)) > max {
		return sluice.Info{}, false, fmt.Errorf("create %s: %w (limit %d bytes)", key, sluice.ErrTooLarge, max)
	}
	if f := opts.Config.Fork; f != nil {
		if err := s.checkSource(f); err != nil {
			return sluice.Info{}, false, fmt.Errorf("create %s: %w", key, err)
		}
	}
	s.creating[key] = make(chan struct{})
	if !opts.Closed {
		s.open++
	}
	return sluice.Info{}, true, nil
}

// createdLocked ends the reservation of key: the stream is counted, or, after err,
// uncounted. The caller holds s.mu.
func (s *Store) createdLocked(key string, opts sluice.CreateOptions, err error) {
	close(s.creating[key])
	delete(s.creating, key)
	if err != nil {
		if !opts.Closed {
			s.open--
		}
		return
	}
	s.diskBytes.Add(int64(len(opts.Data)))
	if opts.Closed {
		s.closes.Add(key)
	}
	if expires(opts.Config) {
		s.expiring[key] = true
	}
}

// base is the offset of a stream's first own byte: a fork's base, else 0.
func base(c sluice.Config) int64 {
	if c.Fork != nil {
		return c.Fork.Base
	}
	return 0
}

// writeDir writes a new stream's directory in the trash and makes it durable, for
// placeLocked to rename into place.
func (s *Store) writeDir(m meta, opts sluice.CreateOptions) (string, error) {
	tmp, err := os.MkdirTemp(s.path("trash"), "new-")
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(m)
	names, bodies := []string{"meta.json", "data"}, [][]byte{b, opts.Data}
	if opts.Closed {
		names, bodies = append(names, "closed"), append(bodies, nil)
	}
	var written []*os.File
	defer func() {
		for _, f := range written {
			f.Close()
		}
	}()
	for i, name := range names {
		f, err := os.OpenFile(filepath.Join(tmp, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			written = append(written, f)
			_, err = f.Write(bodies[i])
		}
		if err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	d, err := os.Open(tmp)
	if err == nil {
		written = append(written, d)
		err = s.syncer.sync(written...)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// placeLocked renames the directory that writeDir wrote to dir, and counts a fork among
// its source's readers. The caller holds s.mu.
func (s *Store) placeLocked(tmp, dir string, fork *sluice.Fork) error {
	err := os.MkdirAll(filepath.Dir(dir), 0o755)
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if fork != nil {
		if err := s.addRef(fork.Source, 1); err != nil {
			os.RemoveAll(dir)
			return err
		}
	}
	return nil
}

// syncEntries makes the entries of the directory dir durable, with the syncer.
func (s *Store) syncEntries(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return s.syncer.sync(d)
}

// existing returns the Info of a stream that exists: errExpired (with its Info) past
// its expiry, sluice.ErrGone once soft-deleted. The caller holds s.mu.
func (s *Store) existing(key string) (sluice.Info, error) {
	st := s.streams[key]
	if st == nil {
		var err error
		if st, err = s.peek(key); err != nil {
			return sluice.Info{}, err
		}
	}
	info := st.snap.Load().Info
	switch {
	case st.deleted:
		return info, fmt.Errorf("create %s: %w", key, sluice.ErrGone)
	case st.expired(time.Now()):
		return info, errExpired
	}
	return info, nil
}

// Open returns a handle on an existing stream. Streams with live handles are shared, so
// that all followers of a stream read one tail. A stream past its expiry is deleted
// (ErrNotFound); one deleted while forks read it is ErrGone.
func (s *Store) Open(ctx context.Context, key string) (sluice.Stream, error) {
	st, err := s.acquire(key, "")
	if err != nil {
		return nil, err
	}
	if st.expired(time.Now()) {
		s.release(st)
		s.mu.Lock()
		err := s.expireLocked(key)
		s.mu.Unlock()
		return nil, fmt.Errorf("open: %w", err)
	}
	return &handle{st: st, touch: true}, nil
}

// acquire returns the shared state of the stream of key, with a reference taken; with
// a version, it is the stream a fork reads (deleted or not, but of that version), else
// a stream that is not deleted.
func (s *Store) acquire(key, version string) (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acquireLocked(key, version)
}

// acquireLocked is acquire for a caller that holds s.mu.
func (s *Store) acquireLocked(key, version string) (*stream, error) {
	st := s.streams[key]
	if st == nil {
		var err error
		if st, err = s.load(key); err != nil {
			return nil, err
		}
		s.streams[key] = st
	}
	st.refs++
	var err error
	switch {
	case version != "" && st.snap.Load().Info.Version != version:
		err = fmt.Errorf("open %s, version %s: %w", key, version, sluice.ErrNotFound)
	case version == "" && st.deleted:
		err = fmt.Errorf("open %s: %w", key, sluice.ErrGone)
	default:
		return st, nil
	}
	for _, st := range s.releaseLocked(st) {
		st.closeFiles() // under s.mu, but none has bytes to fsync: nothing wrote since it was loaded
	}
	return nil, err
}

// peek reads a stream's state from disk without opening its files, for a look at its
// Info. The caller holds s.mu.
func (s *Store) peek(key string) (*stream, error) {
	st, m, err := s.loadMeta(key)
	if err != nil {
		return nil, err
	}
	info := sluice.Info{Closed: exists(filepath.Join(st.dir, "closed")), Version: m.Version, Config: m.Config}
	if fi, err := os.Stat(filepath.Join(st.dir, "data")); err == nil {
		info.Length = st.base + fi.Size()
	} else if rec, err := readRecord(st.dir); err == nil {
		info.Length = rec.Size
	}
	sn := tail.New(info)
	st.snap.Store(&sn)
	return st, nil
}

// loadMeta reads what a stream's directory says of it, but for its bytes.
func (s *Store) loadMeta(key string) (*stream, meta, error) {
	dir := s.streamDir(key)
	m, err := readMeta(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, m, fmt.Errorf("open %s: %w", key, sluice.ErrNotFound)
	}
	if err != nil {
		return nil, m, fmt.Errorf("open %s: meta: %w", key, err)
	}
	st := &stream{store: s, key: key, dir: dir, base: base(m.Config), deleted: exists(filepath.Join(dir, "deleted"))}
	st.access.Store(readAccess(dir, m.Created).UnixNano())
	return st, m, nil
}

// load reads a stream's state from disk and opens its files, and its source's if it is
// a fork. The caller holds s.mu.
func (s *Store) load(key string) (*stream, error) {
	st, m, err := s.loadMeta(key)
	if err != nil {
		return nil, err
	}
	closed := exists(filepath.Join(st.dir, "closed"))
	flag := os.O_RDWR
	if closed {
		flag = os.O_RDONLY
	}
	st.f, err = os.OpenFile(filepath.Join(st.dir, "data"), flag, 0)
	if closed && errors.Is(err, fs.ErrNotExist) {
		return s.loadArchived(st, m)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	size, err := st.loadWriters(closed) // writers.go: may undo an append a crash cut
	if err == nil {
		err = s.openSource(st, m.Config.Fork)
	}
	if err != nil {
		st.closeFiles()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	sn := tail.New(sluice.Info{Length: st.base + size, Closed: closed, Version: m.Version, Config: m.Config})
	st.snap.Store(&sn)
	return st, nil
}

// openSource gives a fork's state a handle on its source, for the bytes below its base.
// The caller holds s.mu.
func (s *Store) openSource(st *stream, f *sluice.Fork) error {
	if f == nil {
		return nil
	}
	src, err := s.acquireLocked(f.Source, f.SourceVersion)
	if err != nil {
		return fmt.Errorf("fork source: %w", err)
	}
	st.source = &handle{st: src} // reads through it do not renew the source's TTL
	return nil
}

// release drops one reference to st, closing its files with the last one.
func (s *Store) release(st *stream) {
	s.mu.Lock()
	done := s.releaseLocked(st)
	s.mu.Unlock()
	for _, st := range done {
		st.closeFiles()
	}
}

// releaseLocked drops one reference to st. It returns the states whose last reference
// went (st, and a fork's sources in turn), whose files the caller closes (closeFiles)
// once it has let go of s.mu, since they may need an fsync. The caller holds s.mu.
func (s *Store) releaseLocked(st *stream) (done []*stream) {
	for st != nil {
		st.refs--
		if st.refs > 0 {
			return done
		}
		s.undirty(st)
		if s.streams[st.key] == st {
			delete(s.streams, st.key)
		}
		done = append(done, st)
		var src *stream
		if st.source != nil {
			src = st.source.st
		}
		st = src
	}
	return done
}

// markDirty records that st has bytes to fsync; the caller holds st.mu and a reference
// to st. Only the first append after each sync takes a lock, and never the store's.
func (s *Store) markDirty(st *stream) {
	if st.dirty.Swap(true) {
		return
	}
	s.dirtyMu.Lock()
	s.dirty[st] = true
	s.dirtyMu.Unlock()
}

// undirty forgets st's bytes to fsync: its files close, or it is purged. The caller
// holds s.mu.
func (s *Store) undirty(st *stream) {
	s.dirtyMu.Lock()
	delete(s.dirty, st)
	s.dirtyMu.Unlock()
}

func (s *Store) syncLoop() {
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

// syncAll makes every dirty stream durable, holding a reference on each so that its
// files stay open meanwhile: with syncfs, in one round for all of them.
func (s *Store) syncAll() error {
	s.mu.Lock()
	s.dirtyMu.Lock()
	var todo []*stream
	for st := range s.dirty {
		st.refs++
		todo = append(todo, st)
	}
	clear(s.dirty)
	s.dirtyMu.Unlock()
	s.mu.Unlock()
	files := make([]*os.File, 0, 2*len(todo))
	for _, st := range todo {
		st.dirty.Store(false) // before the sync, which covers every write made so far
		st.mu.Lock()
		files = append(files, st.unsynced()...)
		st.mu.Unlock()
	}
	err := s.syncer.sync(files...)
	for _, st := range todo {
		s.release(st)
	}
	if err != nil {
		return fmt.Errorf("sync %d streams: %w", len(todo), err)
	}
	return nil
}

// scan counts the streams on disk that are open (not closed, not deleted), notes those
// that expire, and removes directories that a crash left without their meta file.
func (s *Store) scan() error {
	dirs, err := filepath.Glob(s.path("streams", "*", "*"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		m, err := readMeta(d)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		if expires(m.Config) {
			s.expiring[m.Key] = true
		}
		if fi, err := os.Stat(filepath.Join(d, "data")); err == nil {
			s.diskBytes.Add(fi.Size())
		}
		if !exists(filepath.Join(d, "closed")) && !exists(filepath.Join(d, "deleted")) {
			s.open++
		}
	}
	return nil
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

// writeMarker creates the empty file name in the directory of root, and makes it
// durable with y.
func writeMarker(y *syncer, root *os.Root, name string) error {
	f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return y.sync(f, d)
}

// replaceIn replaces the file name in the directory of root with b, atomically (a
// temporary file renamed over it), and makes it durable with y.
func replaceIn(y *syncer, root *os.Root, name string, b []byte) error {
	tmp := name + ".tmp"
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := y.sync(f); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return y.sync(d)
}

// writeFileAtomic replaces name with b: a temporary file, fsynced, renamed over it.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := writeFileSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
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

// Ready reports whether the store can write: a file is written and fsynced in its
// directory, and removed.
func (s *Store) Ready(ctx context.Context) error {
	f, err := os.CreateTemp(s.path("trash"), "ready-")
	if err != nil {
		return fmt.Errorf("file store: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file store: %w", err)
	}
	return nil
}
