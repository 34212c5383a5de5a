package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/mock"
)

// memArchive is an archive in memory, enough for the store's side of archiving.
func memArchive() sluice.Archive {
	var mu sync.Mutex
	objects := map[string][]byte{}
	return &mock.Archive{
		PutFn: func(ctx context.Context, key string, r io.Reader, size int64) error {
			b, err := io.ReadAll(r)
			mu.Lock()
			defer mu.Unlock()
			objects[key] = b
			return err
		},
		OpenFn: func(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
			mu.Lock()
			defer mu.Unlock()
			b, ok := objects[key]
			if !ok {
				return nil, sluice.ErrNotFound
			}
			return io.NopCloser(bytes.NewReader(b[off:])), nil
		},
		StatFn: func(ctx context.Context, key string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			b, ok := objects[key]
			if !ok {
				return 0, sluice.ErrNotFound
			}
			return int64(len(b)), nil
		},
		DeleteFn: func(ctx context.Context, key string) error {
			mu.Lock()
			defer mu.Unlock()
			delete(objects, key)
			return nil
		},
	}
}

// archivable: the store's side of archiving (sluice.ArchivableStore). Closes are told
// of (Notify, then ClosedSince), those made closed at creation too; LiveClosed lists
// closed streams with their live copy and their record; MarkArchived applies only to
// the version it names; once RemoveLive has removed the live copy, the stream reads
// the same from the archive, and is no longer listed.
func archivable(t *testing.T, open Open) {
	ctx := context.Background()
	archive := memArchive()
	s := open(t, Options{Archive: archive})
	_, cursor, _ := s.ClosedSince(0)
	notify := s.Notify()
	key, born, still := newKey(t), newKey(t), newKey(t)
	Create(t, s, key)
	Create(t, s, still)
	h := MustOpen(t, s, key)
	data := bytes.Repeat([]byte("archived bytes\n"), 100)
	info, err := h.Write(ctx, sluice.Write{Data: data, Close: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, born, sluice.CreateOptions{Data: []byte("x"), Closed: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notify:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify's channel not closed by a close")
	}
	keys, _, complete := s.ClosedSince(cursor)
	if !complete || !slices.Contains(keys, key) || !slices.Contains(keys, born) || slices.Contains(keys, still) {
		t.Fatalf("ClosedSince = %q, complete %v; want %s and %s, not the open %s", keys, complete, key, born, still)
	}
	lc := liveClosed(t, s, key)
	if lc == nil || lc.Version != info.Version || lc.Archived != nil {
		t.Fatalf("LiveClosed entry %+v, want version %s, not archived", lc, info.Version)
	}
	if liveClosed(t, s, still) != nil {
		t.Fatal("LiveClosed lists an open stream")
	}
	rec := sluice.ArchiveRecord{Version: info.Version, Size: info.Length, CRC32C: 7, At: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.MarkArchived(ctx, key, sluice.ArchiveRecord{Version: "another"}); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("MarkArchived of another version = %v, want ErrNotFound", err)
	}
	if err := archive.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkArchived(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Archived(ctx, key); err != nil || got == nil || got.Size != rec.Size || got.CRC32C != 7 || !got.At.Equal(rec.At) {
		t.Fatalf("Archived = %+v, %v; want %+v", got, err, rec)
	}
	if lc := liveClosed(t, s, key); lc == nil || lc.Archived == nil {
		t.Fatalf("LiveClosed entry of an archived stream = %+v, want its record", lc)
	}
	if err := s.RemoveLive(ctx, key, info.Version); err != nil {
		t.Fatal(err)
	}
	if liveClosed(t, s, key) != nil {
		t.Fatal("LiveClosed lists a stream whose live copy is gone")
	}
	got, after := readAll(t, MustOpen(t, s, key))
	if !bytes.Equal(got, data) || !after.Closed || after.Length != info.Length || after.Version != info.Version {
		t.Fatalf("after RemoveLive: %d bytes, %+v; want the %d archived bytes, %+v", len(got), after, len(data), info)
	}
}

// archiveMaxAge: a stream archived longer ago than the store's ArchiveMaxAge is purged
// at a sweep, with its archived object, whether its live copy is still there or not;
// one archived since is kept.
func archiveMaxAge(t *testing.T, open Open) {
	ctx := context.Background()
	archive := memArchive()
	s := open(t, Options{Archive: archive, ArchiveMaxAge: time.Hour})
	archived := func(key string, at time.Time, removeLive bool) {
		t.Helper()
		Create(t, s, key)
		h := MustOpen(t, s, key)
		defer h.Release()
		info, err := h.Write(ctx, sluice.Write{Data: []byte("old log\n"), Close: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := archive.Put(ctx, key, strings.NewReader("old log\n"), info.Length); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkArchived(ctx, key, sluice.ArchiveRecord{Version: info.Version, Size: info.Length, At: at}); err != nil {
			t.Fatal(err)
		}
		if removeLive {
			if err := s.RemoveLive(ctx, key, info.Version); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, oldLive, recent := newKey(t), newKey(t), newKey(t)
	archived(old, time.Now().Add(-2*time.Hour), true)
	archived(oldLive, time.Now().Add(-2*time.Hour), false)
	archived(recent, time.Now().Add(-time.Minute), true)
	for _, key := range []string{old, oldLive} {
		eventually(t, key+" purged", func() bool {
			h, err := s.Open(ctx, key)
			if err == nil {
				h.Release()
			}
			return errors.Is(err, sluice.ErrNotFound)
		})
		if _, err := archive.Stat(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
			t.Errorf("the archived object of the purged %s: Stat = %v, want ErrNotFound", key, err)
		}
	}
	got, _ := readAll(t, MustOpen(t, s, recent))
	if string(got) != "old log\n" {
		t.Fatalf("a stream archived within ArchiveMaxAge reads %q", got)
	}
}

func liveClosed(t *testing.T, s sluice.ArchivableStore, key string) *sluice.LiveClosed {
	t.Helper()
	all, err := s.LiveClosed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, lc := range all {
		if lc.Key == key {
			return &lc
		}
	}
	return nil
}
