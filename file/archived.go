package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/tail"
)

// The store's side of archiving (sluice.ArchivableStore). An archived stream has an
// "archived" file beside its meta file, holding its sluice.ArchiveRecord as JSON and
// written once, atomically. RemoveLive then deletes the data file, and the stream is
// read from Options.Archive: its directory, meta and markers stay, so that the key keeps
// its version and Create still sees it exists.

var _ sluice.ArchivableStore = (*Store)(nil)

// Notify returns a channel closed when the next stream closes.
func (s *Store) Notify() <-chan struct{} { return s.closes.Notify() }

// ClosedSince returns the keys of the streams closed from cursor on; see
// sluice.ArchivableStore.
func (s *Store) ClosedSince(cursor uint64) ([]string, uint64, bool) { return s.closes.Since(cursor) }

// LiveClosed lists the closed streams that still have their data file.
func (s *Store) LiveClosed(ctx context.Context) ([]sluice.LiveClosed, error) {
	dirs, err := filepath.Glob(s.path("streams", "*", "*"))
	if err != nil {
		return nil, err
	}
	var out []sluice.LiveClosed
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !exists(filepath.Join(d, "closed")) || !exists(filepath.Join(d, "data")) {
			continue
		}
		m, err := readMeta(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // purged meanwhile
			}
			return nil, err
		}
		lc := sluice.LiveClosed{Key: m.Key, Version: m.Version}
		if rec, err := readRecord(d); err == nil {
			lc.Archived = rec
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		out = append(out, lc)
	}
	return out, nil
}

// MarkArchived writes the stream's archived marker, if the stream is closed and of the
// record's version. As a close's marker, it is written and synced without the store's
// lock, through the directory's handle taken under it (markClosed).
func (s *Store) MarkArchived(ctx context.Context, key string, rec sluice.ArchiveRecord) error {
	root, err := s.closedRoot(key, rec.Version)
	if err != nil {
		return fmt.Errorf("mark %s archived: %w", key, err)
	}
	defer root.Close()
	b, _ := json.Marshal(rec)
	if err := replaceIn(s.syncer, root, "archived", b); err != nil {
		return fmt.Errorf("mark %s archived: %w", key, err)
	}
	return nil
}

// closedRoot opens the directory of the stream of key, which must be closed and of
// version.
func (s *Store) closedRoot(key, version string) (*os.Root, error) {
	dir := s.streamDir(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := readMeta(dir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && m.Version != version {
		return nil, sluice.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, "closed")) {
		return nil, errors.New("not closed")
	}
	return os.OpenRoot(dir)
}

// Archived returns the stream's archive record, or nil if it is not archived.
func (s *Store) Archived(ctx context.Context, key string) (*sluice.ArchiveRecord, error) {
	rec, err := readRecord(s.streamDir(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive record of %s: %w", key, err)
	}
	return rec, nil
}

// RemoveLive deletes the data file of an archived stream of the given version. Handles
// open on the stream keep reading their open file; new ones read the archive.
func (s *Store) RemoveLive(ctx context.Context, key, version string) error {
	if s.opts.Archive == nil {
		return fmt.Errorf("remove live copy of %s: the store has no archive to read it from", key)
	}
	dir := s.streamDir(key)
	if err := s.removeLive(key, version, dir); err != nil {
		return err
	}
	if err := s.syncEntries(dir); err != nil && !errors.Is(err, fs.ErrNotExist) { // purged meanwhile
		return fmt.Errorf("remove live copy of %s: %w", key, err)
	}
	return nil
}

// removeLive deletes the data file in dir, the directory of the stream of key, if the
// stream is of version and archived.
func (s *Store) removeLive(key, version, dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := readMeta(dir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && m.Version != version {
		return fmt.Errorf("remove live copy of %s: %w", key, sluice.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove live copy of %s: %w", key, err)
	}
	if _, err := readRecord(dir); err != nil {
		return fmt.Errorf("remove live copy of %s: not archived: %w", key, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		s.diskBytes.Add(-fi.Size())
	}
	if err := os.Remove(filepath.Join(dir, "data")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove live copy of %s: %w", key, err)
	}
	return nil
}

// loadArchived completes the state of a closed stream whose data file is gone: it is
// read from the archive, which holds all of its bytes (a fork's from its source too).
// The caller holds s.mu.
func (s *Store) loadArchived(st *stream, m meta) (*stream, error) {
	rec, err := readRecord(st.dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: no data and no archive record: %w", st.key, err)
	}
	if s.opts.Archive == nil {
		return nil, fmt.Errorf("open %s: the stream is archived, and the store has no archive", st.key)
	}
	sn := tail.New(sluice.Info{Length: rec.Size, Closed: true, Version: m.Version, Config: m.Config})
	st.snap.Store(&sn)
	return st, nil
}

// purgeArchived deletes the archived object of a closed stream, before Purge deletes the
// stream, so that a failure leaves the stream readable rather than an orphan object.
func (s *Store) purgeArchived(ctx context.Context, key string) error {
	dir := s.streamDir(key)
	if s.opts.Archive == nil || !exists(filepath.Join(dir, "closed")) {
		return nil
	}
	if err := s.opts.Archive.Delete(ctx, key); err != nil {
		return fmt.Errorf("purge %s: delete archived object: %w", key, err)
	}
	return nil
}

func readMeta(dir string) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

func readRecord(dir string) (*sluice.ArchiveRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, "archived"))
	if err != nil {
		return nil, err
	}
	var rec sluice.ArchiveRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("archive record: %w", err)
	}
	return &rec, nil
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}
