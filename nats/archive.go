package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
)

// The store's side of archiving (sluice.ArchivableStore) in cluster mode. Every instance
// runs an Archiver, and each closed stream is archived by one of them: the instance
// that closes a stream takes its archive lease (a create-only KV entry lease.<token>
// naming the instance and an expiry) and only then enqueues it. An instance that dies
// mid-upload leaves a lease that lapses; the others' ArchiveScan finds the stream closed,
// unarchived and unleased, takes the lease and archives it. The archive record lives in
// the stream's meta entry, updated with a revision check so a purge always wins; after
// RemoveLive the subject keeps only its close marker (length and state) and the bytes
// are read from Options.Archive.

var _ sluice.ArchivableStore = (*Store)(nil)

type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

func leaseKey(key string) string { return "lease." + token(key) }

// lease takes the right to archive key's stream for LeaseTTL, if no live instance
// holds it; it reports whether this instance now holds it.
func (s *Store) lease(ctx context.Context, key string) bool {
	b, _ := json.Marshal(lease{Owner: s.id, Until: time.Now().Add(s.opts.LeaseTTL)})
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Create(ctx, leaseKey(key), b)
		return err
	})
	if err == nil {
		return true
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		s.log.Warn("nats store: archive lease", "key", key, "err", err)
		return false
	}
	e, err := s.kv.Get(ctx, leaseKey(key))
	if err != nil {
		return false
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && time.Now().Before(l.Until) {
		return false // held, by another instance or by this one's Archiver at work
	}
	_, err = s.kv.Update(ctx, leaseKey(key), b, e.Revision())
	return err == nil
}

func (s *Store) dropLease(ctx context.Context, key string) {
	s.retry(ctx, func(ctx context.Context) error {
		err := s.kv.Purge(ctx, leaseKey(key))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	})
}

// LiveClosed lists closed streams whose live bytes remain: archived ones (so that any
// instance's Archiver removes them when due; RemoveLive is idempotent), and unarchived
// ones whose lease this instance takes.
func (s *Store) LiveClosed(ctx context.Context) ([]sluice.LiveClosed, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, "*") // meta entries: one token, no dots
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []sluice.LiveClosed
	for _, tok := range keys {
		e, err := s.kv.Get(ctx, tok)
		if err != nil {
			continue // purged meanwhile
		}
		var m meta
		if json.Unmarshal(e.Value(), &m) != nil || m.Removed {
			continue
		}
		last, err := s.js1.GetLastMsgForSubject(ctx, s.subject(m.Key, m.Version))
		if err != nil || last.Header.Get(hdrClose) == "" {
			continue
		}
		if m.Archived == nil && !s.lease(ctx, m.Key) {
			continue
		}
		out = append(out, sluice.LiveClosed{Key: m.Key, Version: m.Version, Archived: m.Archived})
	}
	return out, ctx.Err()
}

// updateMeta applies f to the stream's meta entry if it has the given version, with a
// revision check, retrying on a concurrent change.
func (s *Store) updateMeta(ctx context.Context, key, version string, f func(*meta) error) error {
	for {
		m, rev, err := s.meta(ctx, key)
		if err != nil {
			return err
		}
		if m.Version != version {
			return fmt.Errorf("%s: %w", key, sluice.ErrNotFound)
		}
		if err := f(&m); err != nil {
			return err
		}
		b, _ := json.Marshal(m)
		_, err = s.kv.Update(ctx, token(key), b, rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !wrongLastSeq(err) && !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// MarkArchived records the archive in the stream's meta entry and frees the lease.
func (s *Store) MarkArchived(ctx context.Context, key string, rec sluice.ArchiveRecord) error {
	err := s.updateMeta(ctx, key, rec.Version, func(m *meta) error {
		m.Archived = &rec
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark archived: %w", err)
	}
	s.dropLease(ctx, key)
	return nil
}

// Archived returns the stream's archive record, or nil.
func (s *Store) Archived(ctx context.Context, key string) (*sluice.ArchiveRecord, error) {
	m, _, err := s.meta(ctx, key)
	if err != nil {
		return nil, err
	}
	return m.Archived, nil
}

// RemoveLive marks the stream removed, so that readers turn to the archive, then purges
// its subject down to the close marker, which keeps its length and state.
func (s *Store) RemoveLive(ctx context.Context, key, version string) error {
	if s.opts.Archive == nil {
		return fmt.Errorf("remove live copy of %s: the store has no archive to read it from", key)
	}
	err := s.updateMeta(ctx, key, version, func(m *meta) error {
		if m.Archived == nil {
			return fmt.Errorf("remove live copy of %s: not archived", key)
		}
		m.Removed = true
		return nil
	})
	if err != nil {
		return err
	}
	return s.retry(ctx, func(ctx context.Context) error {
		return s.js1.Purge(ctx, jetstream.WithPurgeSubject(s.subject(key, version)), jetstream.WithPurgeKeep(1))
	})
}

// checkRemoved reports whether the stream's live bytes were removed, remembering it.
func (st *stream) checkRemoved(ctx context.Context) bool {
	if st.store.opts.Archive == nil {
		return false
	}
	m, _, err := st.store.meta(ctx, st.key)
	if err == nil && m.Version == st.version && m.Removed {
		st.removed.Store(true)
	}
	return st.removed.Load()
}

// purgeArchived deletes the archived object of a stream and its lease, before Purge
// deletes the stream, so a failure leaves the stream readable rather than an orphan.
func (s *Store) purgeArchived(ctx context.Context, key string) error {
	if s.opts.Archive != nil {
		if err := s.opts.Archive.Delete(ctx, key); err != nil {
			return fmt.Errorf("purge %s: delete archived object: %w", key, err)
		}
	}
	s.dropLease(ctx, key)
	return nil
}

// scanLoop takes over archiving from dead instances every ArchiveScan, until Close.
func (s *Store) scanLoop() {
	defer close(s.done)
	if s.opts.ArchiveScan <= 0 || s.opts.OnClose == nil {
		<-s.stop
		return
	}
	t := time.NewTicker(s.opts.ArchiveScan)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		live, err := s.LiveClosed(ctx)
		cancel()
		if err != nil {
			s.log.Warn("nats store: archive scan", "err", err)
		}
		for _, lc := range live {
			if lc.Archived == nil {
				s.opts.OnClose(lc.Key)
			}
		}
	}
}

// Close stops the archive scan. It leaves the NATS connection to its owner.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}

// archiveReader reads a removed stream from the archive through one sequential
// request, reopened where a read does not follow the last.
type archiveReader struct {
	archive sluice.Archive
	key     string
	rc      io.ReadCloser
	cancel  context.CancelFunc
	off     int64
}

func (r *archiveReader) close() {
	if r.rc != nil {
		r.cancel()
		r.rc.Close()
		r.rc = nil
	}
}

// readArchive reads bytes of sn at off from the archive into p (32 KiB if p is empty).
func (h *handle) readArchive(ctx context.Context, sn *snapshot, p []byte, off int64) ([]byte, error) {
	if h.st.store.opts.Archive == nil {
		return nil, fmt.Errorf("the stream is archived, and the store has no archive")
	}
	if len(p) == 0 {
		p = make([]byte, 32<<10)
	}
	p = p[:min(int64(len(p)), sn.Info.Length-off)]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ar == nil {
		h.ar = &archiveReader{archive: h.st.store.opts.Archive, key: h.st.key}
	}
	r := h.ar
	if r.rc != nil && r.off != off {
		r.close()
	}
	if r.rc == nil {
		actx, cancel := context.WithCancel(context.Background())
		rc, err := r.archive.Open(actx, r.key, off)
		if err != nil {
			cancel()
			return nil, err
		}
		r.rc, r.cancel, r.off = rc, cancel, off
	}
	stop := context.AfterFunc(ctx, r.cancel) // a stalled archive ends with ctx
	n, err := io.ReadFull(r.rc, p)
	stop()
	r.off += int64(n)
	if err != nil {
		r.close()
		if n > 0 {
			err = nil
		}
	}
	return p[:n], err
}
