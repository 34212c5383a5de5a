package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
)

// How streams end in cluster mode, as in the file store: Purge deletes one for good, or,
// while forks still read its bytes (meta.Refs), soft-deletes it (meta.Deleted:
// sluice.ErrGone for everyone but its forks); a stream past its expiry is deleted the
// same way, by the first request that finds it so on any instance, or by a sweep.
// Deleting a fork lowers its source's Refs, and a soft-deleted or expired source whose
// last fork went is deleted in turn, up the chain. Every change of a meta entry is made
// with a revision check, so that instances racing to fork, delete or expire a stream
// agree.

// errRetry is a purge that lost a race for the meta entry, to be decided again.
var errRetry = errors.New("the stream's meta entry changed meanwhile")

// expired reports whether a stream with meta m, last accessed here at access (zero if
// unknown), is past its expiry at now.
func expired(m meta, access, now time.Time) bool {
	c := m.Config
	if !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt) {
		return true
	}
	if c.TTL <= 0 {
		return false
	}
	last := m.Access
	if last.IsZero() {
		last = m.Created
	}
	if access.After(last) {
		last = access
	}
	return !now.Before(last.Add(c.TTL))
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// accessOf returns when this instance last accessed the stream of key, if it holds it.
func (s *Store) accessOf(key string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[key]; st != nil && st.accessed.Load() {
		return time.Unix(0, st.access.Load())
	}
	return time.Time{}
}

// Open returns a handle on an existing stream. Handles on one stream in this process
// share its state, and every stream followed here is fed by the instance's one ordered
// consumer (read.go: follow), so that followers cost JetStream nothing each. The shared state is brought up to date with the subject's last message, since
// other instances may have written since. A stream past its expiry is deleted
// (ErrNotFound); one deleted while forks read it is ErrGone.
func (s *Store) Open(ctx context.Context, key string) (sluice.Stream, error) {
	m, rev, err := s.meta(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	switch {
	case m.Deleted:
		return nil, fmt.Errorf("open %s: %w", key, sluice.ErrGone)
	case expired(m, s.accessOf(key), time.Now()):
		return nil, fmt.Errorf("open: %w", s.expire(ctx, key, m, rev))
	}
	h, err := s.openMeta(ctx, m)
	if err != nil {
		return nil, err
	}
	h.touch = true
	return h, nil
}

// openVersion returns a handle on the stream of key of the given version, deleted or
// not, for a fork to read its source through; reads through it renew nothing.
func (s *Store) openVersion(ctx context.Context, key, version string) (*handle, error) {
	m, _, err := s.meta(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	if m.Version != version {
		return nil, fmt.Errorf("open %s, version %s: %w", key, version, sluice.ErrNotFound)
	}
	return s.openMeta(ctx, m)
}

// openMeta returns a handle on the stream whose meta entry is m.
func (s *Store) openMeta(ctx context.Context, m meta) (*handle, error) {
	key := m.Key
	s.mu.Lock()
	st := s.streams[key]
	if st == nil || st.version != m.Version {
		st = newStream(s, key, m.Version, m.Config)
		st.access.Store(later(m.Access, m.Created).UnixNano())
		s.streams[key] = st
		s.bySubject[st.subj] = st
	}
	st.refs++
	s.mu.Unlock()
	if m.Removed {
		st.removed.Store(true)
	}
	if err := s.openSource(ctx, st, m.Config.Fork); err != nil {
		s.release(st)
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if err := st.refresh(ctx); err != nil {
		s.release(st)
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if st.snap.Load().Purged {
		s.release(st)
		return nil, fmt.Errorf("open %s: %w", key, sluice.ErrNotFound)
	}
	return &handle{st: st}, nil
}

// openSource gives a fork's state a handle on its source, for the bytes below its
// base, unless it has one.
func (s *Store) openSource(ctx context.Context, st *stream, f *sluice.Fork) error {
	s.mu.Lock()
	has := st.source != nil
	s.mu.Unlock()
	if f == nil || has {
		return nil
	}
	src, err := s.openVersion(ctx, f.Source, f.SourceVersion)
	if err != nil {
		return fmt.Errorf("fork source: %w", err)
	}
	s.mu.Lock()
	if st.source == nil {
		st.source, src = src, nil
	}
	s.mu.Unlock()
	if src != nil {
		src.Release() // another Open set it meanwhile
	}
	return nil
}

// release drops one reference to st; with the last, it saves when the stream was last
// accessed here (for its TTL), and gives back its fork source's handle.
func (s *Store) release(st *stream) {
	s.mu.Lock()
	st.refs--
	last := st.refs == 0
	if last {
		s.forget(st)
	}
	s.mu.Unlock()
	if !last {
		return
	}
	if st.accessed.Load() {
		at := time.Unix(0, st.access.Load())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.updateMeta(ctx, st.key, st.version, func(m *meta) error {
			m.Access = later(m.Access, at)
			return nil
		})
		cancel()
		if err != nil && !errors.Is(err, sluice.ErrNotFound) {
			s.log.Warn("nats store: save the last access", "key", st.key, "err", err)
		}
	}
	if st.source != nil {
		st.source.Release()
	}
}

// forget drops st from the streams held here. The caller holds s.mu.
func (s *Store) forget(st *stream) {
	if s.streams[st.key] == st {
		delete(s.streams, st.key)
	}
	if s.bySubject[st.subj] == st {
		delete(s.bySubject, st.subj)
	}
}

// Purge deletes the stream of key for good, or soft-deletes it if forks read it.
func (s *Store) Purge(ctx context.Context, key string) error {
	for {
		m, rev, err := s.meta(ctx, key)
		switch {
		case err != nil:
			return fmt.Errorf("purge %w", err)
		case m.Deleted:
			return fmt.Errorf("purge %s: %w", key, sluice.ErrGone)
		case m.Refs > 0:
			err = s.softDelete(ctx, key, m, rev)
		default:
			err = s.remove(ctx, key, m, rev)
		}
		if !errors.Is(err, errRetry) {
			return err
		}
	}
}

// softDelete marks the stream deleted, its bytes kept for its forks.
func (s *Store) softDelete(ctx context.Context, key string, m meta, rev uint64) error {
	m.Deleted = true
	if err := s.putMeta(ctx, m, rev); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	s.unmark(ctx, key, m.Version)
	return nil
}

// putMeta replaces the meta entry of m.Key, if it is still at revision rev (errRetry
// otherwise).
func (s *Store) putMeta(ctx context.Context, m meta, rev uint64) error {
	b, _ := json.Marshal(m)
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Update(ctx, token(m.Key), b, rev)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyExists) || wrongLastSeq(err) {
		return errRetry
	}
	return err
}

// remove deletes the stream for good: its archived object, then its meta entry (at
// revision rev: the key is free for a new stream), then leaves a purge marker on its
// subject, which ends followers and stale writers on every instance, then deletes the
// subject's bytes, keeping only the marker, which expires on its own. A fork's removal
// lowers its source's count of forks, and removes the source too if that leaves it
// deleted, or expired, and unread.
func (s *Store) remove(ctx context.Context, key string, m meta, rev uint64) error {
	if err := s.purgeArchived(ctx, key); err != nil {
		return err
	}
	err := s.retry(ctx, func(ctx context.Context) error {
		return s.kv.Purge(ctx, token(key), jetstream.LastRevision(rev))
	})
	if wrongLastSeq(err) || errors.Is(err, jetstream.ErrKeyExists) {
		return errRetry
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	s.unmark(ctx, key, m.Version)
	if err := s.dropBytes(ctx, key, m.Version); err != nil {
		return err
	}
	if f := m.Config.Fork; f != nil {
		s.unref(ctx, f)
	}
	return nil
}

// dropBytes ends a removed stream's version on every instance (a purge marker) and
// deletes its bytes and its writers' state.
func (s *Store) dropBytes(ctx context.Context, key, version string) error {
	subj := s.subject(key, version)
	msg := nats.NewMsg(subj)
	msg.Header.Set(hdrPurge, "1")
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(time.Hour))
		return err
	})
	if err != nil {
		return fmt.Errorf("purge %s: marker: %w", key, err)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		if err := s.js1.Purge(ctx, jetstream.WithPurgeSubject(subj+".>")); err != nil {
			return err
		}
		return s.js1.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeKeep(1))
	})
	if err != nil {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	s.mu.Lock()
	st := s.streams[key]
	if st != nil && st.version == version {
		s.forget(st)
	} else {
		st = nil
	}
	s.mu.Unlock()
	if st != nil {
		st.markPurged()
	}
	return nil
}

// unref lowers the count of forks of the source of fork f, and removes the source if
// that leaves it unread and deleted or expired. A failure is logged: the source then
// stays until it is deleted again.
func (s *Store) unref(ctx context.Context, f *sluice.Fork) {
	err := s.updateMeta(ctx, f.Source, f.SourceVersion, func(m *meta) error {
		m.Refs = max(0, m.Refs-1)
		return nil
	})
	if err != nil {
		if !errors.Is(err, sluice.ErrNotFound) {
			s.log.Error("nats store: fork source: lower its count of forks", "key", f.Source, "err", err)
		}
		return
	}
	for {
		m, rev, err := s.meta(ctx, f.Source)
		if err != nil || m.Version != f.SourceVersion || m.Refs > 0 || (!m.Deleted && !expired(m, time.Time{}, time.Now())) {
			return
		}
		if err := s.remove(ctx, f.Source, m, rev); !errors.Is(err, errRetry) {
			if err != nil {
				s.log.Error("nats store: remove an unread fork source", "key", f.Source, "err", err)
			}
			return
		}
	}
}

// expire deletes the stream of key, past its expiry: for good (ErrNotFound), or soft
// if forks read it (ErrGone).
func (s *Store) expire(ctx context.Context, key string, m meta, rev uint64) error {
	for {
		var err error
		if m.Refs > 0 {
			if m.Deleted {
				return fmt.Errorf("%s expired: %w", key, sluice.ErrGone)
			}
			err = s.softDelete(ctx, key, m, rev)
		} else {
			err = s.remove(ctx, key, m, rev)
		}
		if errors.Is(err, errRetry) {
			if m, rev, err = s.meta(ctx, key); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if m.Refs > 0 {
			return fmt.Errorf("%s expired: %w", key, sluice.ErrGone)
		}
		return fmt.Errorf("%s expired: %w", key, sluice.ErrNotFound)
	}
}

// checkSource checks that the source of the fork f can be forked, and counts the fork
// among its readers: it exists, is not deleted or expired, is of the version f names,
// and reaches f's base. The caller lowers the count again (unref) if the fork is not
// made after all.
func (s *Store) checkSource(ctx context.Context, f *sluice.Fork) error {
	h, err := s.openVersion(ctx, f.Source, f.SourceVersion)
	if err != nil {
		return fmt.Errorf("fork source: %w", err)
	}
	length := h.Info().Length
	h.Release()
	if f.Base > length {
		return fmt.Errorf("fork source %s at %d, length %d: %w", f.Source, f.Base, length, sluice.ErrGap)
	}
	return s.updateMeta(ctx, f.Source, f.SourceVersion, func(m *meta) error {
		switch {
		case m.Deleted:
			return fmt.Errorf("fork source %s: %w", f.Source, sluice.ErrGone)
		case expired(*m, s.accessOf(f.Source), time.Now()):
			return fmt.Errorf("fork source %s: %w", f.Source, sluice.ErrNotFound)
		}
		m.Refs++
		return nil
	})
}

// sweepLoop deletes streams past their expiry every SweepInterval, until Close.
func (s *Store) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := s.sweep(ctx); err != nil {
				s.log.Warn("nats store: sweep expired streams", "err", err)
			}
			cancel()
		}
	}
}

// sweep deletes the streams of the whole cluster that are past their expiry.
func (s *Store) sweep(ctx context.Context) error {
	lister, err := s.kv.ListKeysFiltered(ctx, "*") // meta entries: one token, no dots
	if err != nil {
		return err
	}
	var toks []string
	for k := range lister.Keys() {
		toks = append(toks, k)
	}
	for _, tok := range toks {
		e, err := s.kv.Get(ctx, tok)
		if err != nil {
			continue
		}
		var m meta
		if json.Unmarshal(e.Value(), &m) != nil || m.Deleted {
			continue
		}
		switch {
		case expired(m, s.accessOf(m.Key), time.Now()):
			s.expire(ctx, m.Key, m, e.Revision())
		case s.opts.ArchiveMaxAge > 0 && m.Archived != nil && time.Since(m.Archived.At) >= s.opts.ArchiveMaxAge:
			s.purgeOldArchive(ctx, m)
		case s.opts.IdleClose > 0:
			s.closeIdle(ctx, m)
		}
	}
	return ctx.Err()
}

// purgeOldArchive purges the archived stream of m, whose archive is ArchiveMaxAge old:
// the retention of archived objects. Another instance's sweep may purge it first.
func (s *Store) purgeOldArchive(ctx context.Context, m meta) {
	switch err := s.Purge(ctx, m.Key); {
	case err == nil:
		s.log.Info("nats store: archived stream purged", "key", m.Key, "archived_at", m.Archived.At, "max_age", s.opts.ArchiveMaxAge)
	case !errors.Is(err, sluice.ErrNotFound) && !errors.Is(err, sluice.ErrGone):
		s.log.Warn("nats store: purge an old archived stream", "key", m.Key, "err", err)
	}
}

// closeIdle closes the stream of m if it is open and its last message is older than
// IdleClose: nobody wrote to it for that long.
func (s *Store) closeIdle(ctx context.Context, m meta) {
	last, err := s.js1.GetLastMsgForSubject(ctx, s.subject(m.Key, m.Version))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		if time.Since(m.Created) < s.opts.IdleClose {
			return // new, and empty
		}
	case err != nil || last.Header.Get(hdrClose) != "" || time.Since(last.Time) < s.opts.IdleClose:
		return
	}
	h, err := s.Open(ctx, m.Key)
	if err != nil {
		return
	}
	defer h.Release()
	if _, err := h.Close(ctx); err != nil {
		s.log.Warn("nats store: close an idle stream", "key", m.Key, "err", err)
		return
	}
	s.log.Info("nats store: idle stream closed", "key", m.Key, "idle_for", s.opts.IdleClose)
}
