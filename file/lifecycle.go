package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// How streams end: Purge deletes one for good, or, while forks still read its bytes,
// soft-deletes it (a "deleted" marker: sluice.ErrGone for everyone but its forks); a
// stream past its expiry is deleted the same way, by the first request that finds it so
// or by the sweeper. Deleting a fork lowers its source's count of forks ("refs"), and a
// soft-deleted or expired source whose last fork went is deleted in turn, up the chain.

// errExpired is what a look at a stream past its expiry finds; it is deleted then.
var errExpired = errors.New("stream expired")

// expires reports whether a stream made with c expires.
func expires(c sluice.Config) bool { return c.TTL > 0 || !c.ExpiresAt.IsZero() }

// expired reports whether the stream is past its expiry at now.
func (st *stream) expired(now time.Time) bool {
	c := st.snap.Load().Info.Config
	return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt) ||
		c.TTL > 0 && !now.Before(time.Unix(0, st.access.Load()).Add(c.TTL))
}

// Purge deletes a stream and its bytes for good, its archived object first (a failure
// leaves the stream whole), then its directory, moved to the trash atomically, so a
// crash mid-purge never leaves half a stream under its key. A stream that forks read is
// soft-deleted instead (see above).
func (s *Store) Purge(ctx context.Context, key string) error {
	s.mu.Lock()
	soft, err := s.beginPurge(key)
	s.mu.Unlock()
	if err != nil || soft {
		return err
	}
	defer func() {
		s.mu.Lock()
		delete(s.purging, key)
		s.mu.Unlock()
	}()
	if err := s.purgeArchived(ctx, key); err != nil {
		return err
	}
	s.mu.Lock()
	cleanup, err := s.removeLocked(key)
	s.mu.Unlock()
	cleanup(ctx)
	return err
}

// beginPurge soft-deletes the stream of key if forks read it, or else marks it as
// being purged, so that no fork of it is made meanwhile. The caller holds s.mu.
func (s *Store) beginPurge(key string) (soft bool, err error) {
	dir := s.streamDir(key)
	switch {
	case !exists(filepath.Join(dir, "meta.json")) || s.purging[key]:
		return false, fmt.Errorf("purge %s: %w", key, sluice.ErrNotFound)
	case exists(filepath.Join(dir, "deleted")):
		return false, fmt.Errorf("purge %s: %w", key, sluice.ErrGone)
	case readRefs(dir) > 0:
		return true, s.softDeleteLocked(key)
	}
	s.purging[key] = true
	return false, nil
}

// softDeleteLocked marks the stream of key deleted, its bytes kept for its forks. The
// caller holds s.mu.
func (s *Store) softDeleteLocked(key string) error {
	dir := s.streamDir(key)
	if err := writeFileSync(filepath.Join(dir, "deleted"), nil); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if !s.closedLocked(key, dir) {
		s.open--
	}
	if st := s.streams[key]; st != nil {
		st.deleted = true
	}
	delete(s.expiring, key)
	return nil
}

// removeLocked moves the stream of key to the trash and forgets it, and does the same
// for the fork sources it leaves unread and deleted; its cleanup, called once s.mu is
// let go, ends the streams' handles and deletes their files (and, for the sources, their
// archived objects). The caller holds s.mu.
func (s *Store) removeLocked(key string) (cleanup func(context.Context), err error) {
	var trashed []string
	var ended []*stream
	var sources []string // removed with key: their archived objects go too
	cleanup = func(ctx context.Context) {
		for _, st := range ended {
			st.purge() // outside s.mu: stream locks are taken before the store's, never after
		}
		for _, k := range sources {
			if err := s.purgeArchived(ctx, k); err != nil {
				s.log.Warn("delete the archived object of a deleted fork source", "key", k, "err", err)
			}
		}
		for _, t := range trashed {
			if err := os.RemoveAll(t); err != nil {
				s.log.Error("purge: empty trash", "err", err)
			}
		}
	}
	for k := key; k != ""; {
		dir := s.streamDir(k)
		m, merr := readMeta(dir)
		closed := s.closedLocked(k, dir)
		deleted := exists(filepath.Join(dir, "deleted"))
		trash := s.path("trash", "purged-"+randHex(8))
		size := int64(0)
		if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			size = fi.Size()
		}
		if err := os.Rename(dir, trash); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = sluice.ErrNotFound
			}
			return cleanup, fmt.Errorf("purge %s: %w", k, err)
		}
		trashed = append(trashed, trash)
		s.diskBytes.Add(-size)
		if st := s.streams[k]; st != nil {
			delete(s.streams, k)
			s.undirty(st)
			ended = append(ended, st)
		}
		delete(s.expiring, k)
		if !closed && !deleted {
			s.open--
		}
		if k != key {
			sources = append(sources, k)
		}
		k = ""
		if merr == nil && m.Config.Fork != nil {
			k = s.unrefLocked(m.Config.Fork.Source)
		}
	}
	return cleanup, nil
}

// closedLocked reports whether the stream of key in dir counts as closed in s.open. A
// close in flight (stream.markClosed) does not yet: the caller counts it, and the close
// then leaves the count alone. The caller holds s.mu.
func (s *Store) closedLocked(key, dir string) bool {
	if st := s.streams[key]; st != nil && st.closing {
		st.closing = false
		return false
	}
	return exists(filepath.Join(dir, "closed"))
}

// unrefLocked lowers the count of forks of the stream of key, and returns key if that
// leaves it with none while it is deleted or expired, for the caller to remove. The
// caller holds s.mu.
func (s *Store) unrefLocked(key string) string {
	if err := s.addRef(key, -1); err != nil {
		s.log.Error("fork source: lower its count of forks", "key", key, "err", err)
		return ""
	}
	dir := s.streamDir(key)
	if readRefs(dir) > 0 {
		return ""
	}
	if exists(filepath.Join(dir, "deleted")) {
		return key
	}
	if st, err := s.peek(key); err == nil && st.expired(time.Now()) {
		return key
	}
	return ""
}

// expireLocked deletes the stream of key, which is past its expiry: for good
// (ErrNotFound), or soft if forks read it (ErrGone). The files of the streams removed
// are deleted in the background. The caller holds s.mu.
func (s *Store) expireLocked(key string) error {
	dir := s.streamDir(key)
	if readRefs(dir) > 0 {
		if !exists(filepath.Join(dir, "deleted")) {
			if err := s.softDeleteLocked(key); err != nil {
				return err
			}
		}
		return fmt.Errorf("%s expired: %w", key, sluice.ErrGone)
	}
	cleanup, err := s.removeLocked(key)
	if err == nil || errors.Is(err, sluice.ErrNotFound) {
		s.done.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.purgeArchived(ctx, key); err != nil {
				s.log.Warn("delete the archived object of an expired stream", "key", key, "err", err)
			}
			cleanup(ctx)
		})
		return fmt.Errorf("%s expired: %w", key, sluice.ErrNotFound)
	}
	return err
}

// sweepLoop deletes streams past their expiry every SweepInterval, until Close.
func (s *Store) sweepLoop() {
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(time.Now())
			if s.opts.IdleClose > 0 {
				s.closeIdle(time.Now())
			}
			if s.opts.ArchiveMaxAge > 0 {
				s.purgeOldArchives(time.Now())
			}
		}
	}
}

// closeIdle closes the open streams that nobody wrote to for IdleClose (their data
// file's modification time tells when the last byte came), as busl expired its
// streams after an hour: they are archived then like any closed stream.
func (s *Store) closeIdle(now time.Time) {
	dirs, err := filepath.Glob(s.path("streams", "*", "*"))
	if err != nil {
		return
	}
	var idle []string
	for _, d := range dirs {
		if exists(filepath.Join(d, "closed")) || exists(filepath.Join(d, "deleted")) {
			continue
		}
		fi, err := os.Stat(filepath.Join(d, "data"))
		if err != nil || now.Sub(fi.ModTime()) < s.opts.IdleClose {
			continue
		}
		if m, err := readMeta(d); err == nil {
			idle = append(idle, m.Key)
		}
	}
	for _, key := range idle {
		h, err := s.Open(context.Background(), key)
		if err != nil {
			continue
		}
		if _, err := h.Close(context.Background()); err != nil {
			s.log.Warn("close an idle stream", "key", key, "err", err)
		} else {
			s.log.Info("idle stream closed", "key", key, "idle_for", s.opts.IdleClose)
		}
		h.Release()
	}
}

// purgeOldArchives purges the archived streams whose archive is ArchiveMaxAge old at
// now: the retention of archived objects.
func (s *Store) purgeOldArchives(now time.Time) {
	dirs, err := filepath.Glob(s.path("streams", "*", "*", "archived"))
	if err != nil {
		return
	}
	for _, f := range dirs {
		d := filepath.Dir(f)
		rec, err := readRecord(d)
		if err != nil || now.Sub(rec.At) < s.opts.ArchiveMaxAge {
			continue
		}
		m, err := readMeta(d)
		if err != nil || m.Version != rec.Version {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = s.Purge(ctx, m.Key)
		cancel()
		switch {
		case err == nil:
			s.log.Info("archived stream purged", "key", m.Key, "archived_at", rec.At, "max_age", s.opts.ArchiveMaxAge)
		case !errors.Is(err, sluice.ErrNotFound) && !errors.Is(err, sluice.ErrGone):
			s.log.Warn("purge an old archived stream", "key", m.Key, "err", err)
		}
	}
}

// sweep deletes the streams that are past their expiry at now.
func (s *Store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.expiring {
		st := s.streams[key]
		if st == nil {
			var err error
			if st, err = s.peek(key); err != nil {
				delete(s.expiring, key)
				continue
			}
		}
		if st.expired(now) && !st.deleted {
			s.expireLocked(key)
		}
	}
}

// checkSource checks that the source of the fork f can be forked: it exists, is not
// deleted, is of the version f names, and reaches f's base. The caller holds s.mu.
func (s *Store) checkSource(f *sluice.Fork) error {
	st := s.streams[f.Source]
	if st == nil {
		var err error
		if st, err = s.peek(f.Source); err != nil {
			return fmt.Errorf("fork source: %w", err)
		}
	}
	info := st.snap.Load().Info
	switch {
	case s.purging[f.Source]:
		return fmt.Errorf("fork source %s: %w", f.Source, sluice.ErrNotFound)
	case st.deleted:
		return fmt.Errorf("fork source %s: %w", f.Source, sluice.ErrGone)
	case info.Version != f.SourceVersion:
		return fmt.Errorf("fork source %s, version %s: %w", f.Source, f.SourceVersion, sluice.ErrNotFound)
	case f.Base > info.Length:
		return fmt.Errorf("fork source %s at %d, length %d: %w", f.Source, f.Base, info.Length, sluice.ErrGap)
	case st.expired(time.Now()):
		return fmt.Errorf("fork source %s: %w", f.Source, sluice.ErrNotFound)
	}
	return nil
}

// readRefs returns how many forks read the stream in dir.
func readRefs(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "refs"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// addRef changes the count of forks of the stream of key by delta. The caller holds
// s.mu.
func (s *Store) addRef(key string, delta int) error {
	dir := s.streamDir(key)
	n := max(0, readRefs(dir)+delta)
	return writeFileAtomic(filepath.Join(dir, "refs"), []byte(strconv.Itoa(n)+"\n"))
}

// readAccess returns when the stream in dir was last accessed, as its file says, else
// when it was created.
func readAccess(dir string, created time.Time) time.Time {
	b, err := os.ReadFile(filepath.Join(dir, "access"))
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return time.Unix(0, n)
		}
	}
	if created.IsZero() {
		return time.Now() // a stream of an earlier version, without a TTL
	}
	return created
}

// saveAccess records when the stream in dir was last accessed. It is not fsynced: after
// a crash of the machine, a stream lives up to its TTL longer.
func saveAccess(dir string, at time.Time) {
	os.WriteFile(filepath.Join(dir, "access"), []byte(strconv.FormatInt(at.UnixNano(), 10)+"\n"), 0o644)
}
