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

// The store's side of archiving (sluice.ArchivableStore, sluice.Leaser) in cluster
// mode. Every instance runs an Archiver, and each closed stream is archived by one of
// them, the one holding its archive lease (Lease: a KV entry lease.<token> naming the
// instance and an expiry). The instance that closes a stream is told of it (Notify) and
// takes the lease first; one that dies mid-upload leaves a lease that lapses, and
// another instance's Archiver, listing the store every Rescan, takes it over. The
// archive record lives in the stream's meta entry, updated with a revision check so a
// purge always wins; after RemoveLive the subject keeps only its close marker (length
// and state) and the bytes are read from Options.Archive.

var (
	_ sluice.ArchivableStore = (*Store)(nil)
	_ sluice.Leaser          = (*Store)(nil)
)

type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

func leaseKey(key string) string { return "lease." + token(key) }

// Lease takes the right to archive key's stream for ttl, if no instance holds it or
// its holder let it lapse, or renews it if this instance holds it. It reports whether
// this instance holds it now.
func (s *Store) Lease(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	b, _ := json.Marshal(lease{Owner: s.id, Until: time.Now().Add(ttl)})
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Create(ctx, leaseKey(key), b)
		return err
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("lease %s: %w", key, err)
	}
	e, err := s.kv.Get(ctx, leaseKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return false, nil // given back meanwhile: the stream is archived
	}
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", key, err)
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && l.Owner != s.id && time.Now().Before(l.Until) {
		return false, nil // held by another instance
	}
	if _, err = s.kv.Update(ctx, leaseKey(key), b, e.Revision()); err != nil {
		return false, nil // taken by another instance meanwhile
	}
	return true, nil
}

// Unlease gives the lease of key back.
func (s *Store) Unlease(ctx context.Context, key string) error {
	return s.retry(ctx, func(ctx context.Context) error {
		err := s.kv.Purge(ctx, leaseKey(key))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	})
}

// Notify returns a channel closed when the next stream closes through this store.
func (s *Store) Notify() <-chan struct{} { return s.closes.Notify() }

// ClosedSince returns the keys of the streams closed through this store from cursor
// on; see sluice.ArchivableStore.
func (s *Store) ClosedSince(cursor uint64) ([]string, uint64, bool) { return s.closes.Since(cursor) }

// LiveClosed lists the closed streams whose live bytes remain, in the whole cluster:
// any instance's Archiver removes the live copies of archived ones when due
// (RemoveLive is idempotent), and archives the others if it gets their lease.
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

// MarkArchived records the archive in the stream's meta entry.
func (s *Store) MarkArchived(ctx context.Context, key string, rec sluice.ArchiveRecord) error {
	err := s.updateMeta(ctx, key, rec.Version, func(m *meta) error {
		m.Archived = &rec
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark archived: %w", err)
	}
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
// deletes the stream, so a failure leaves the stream readable rather than an orphan,
// and a new stream of the key is not held up by the old one's lease.
func (s *Store) purgeArchived(ctx context.Context, key string) error {
	if s.opts.Archive != nil {
		if err := s.opts.Archive.Delete(ctx, key); err != nil {
			return fmt.Errorf("purge %s: delete archived object: %w", key, err)
		}
	}
	if err := s.Unlease(ctx, key); err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}

// Close stops the sweep of expired streams and the subscription. It leaves the NATS
// connection to its owner.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
		s.sub.Stop()
	}
	<-s.done
	return nil
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
	n, err := h.Archive(h.st.store.opts.Archive, h.st.key).ReadAt(ctx, p, off)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return p[:n], err
}
