package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
)

// failingReader yields n bytes, then an error, as a store read failing mid-upload.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("read failed")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// TestArchiveAllOrNothing proves the Archive rule "the object appears only once it is
// complete": a Put whose reader fails, or ends short of the size, leaves no object (and
// no temporary file), and an earlier object of the key intact.
func TestArchiveAllOrNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := OpenArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"reader fails": &failingReader{n: 1000},
		"reader short": strings.NewReader("short"),
	} {
		if err := a.Put(ctx, "k/"+strings.ReplaceAll(name, " ", "-"), r, 5000); err == nil {
			t.Errorf("%s: Put succeeded", name)
		}
		if _, err := a.Stat(ctx, "k/"+strings.ReplaceAll(name, " ", "-")); !errors.Is(err, sluice.ErrNotFound) {
			t.Errorf("%s: Stat after failed Put: %v, want ErrNotFound", name, err)
		}
	}
	if err := a.Put(ctx, "k", strings.NewReader("first"), 5); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "k", &failingReader{n: 3}, 5); err == nil {
		t.Fatal("failing Put succeeded")
	}
	if b, _ := os.ReadFile(a.Path("k")); string(b) != "first" {
		t.Fatalf("object after a failed replacement: %q, want %q", b, "first")
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("%d temporary files left", len(tmp))
	}
}

// TestArchiveOpenStatDelete proves Open reads from an offset to the end, Stat gives the
// size, Delete removes the object and is no error for a missing one, and objects are
// named by a hash of the key, never by the key itself.
func TestArchiveOpenStatDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := OpenArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("0123456789abcdef")
	if err := a.Put(ctx, "a/b", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a.Path("a/b"), "a/b") || !strings.HasPrefix(a.Path("a/b"), dir) {
		t.Errorf("object path %q names the key or leaves the archive", a.Path("a/b"))
	}
	if n, err := a.Stat(ctx, "a/b"); err != nil || n != 16 {
		t.Fatalf("Stat: %d, %v", n, err)
	}
	rc, err := a.Open(ctx, "a/b", 10)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "abcdef" {
		t.Fatalf("Open at 10: %q, %v", b, err)
	}
	if err := a.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Open(ctx, "a/b", 0); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	if err := a.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete of a missing object: %v", err)
	}
}

// TestArchivedStreamWithoutArchive proves a store never pretends: once an archived
// stream's live copy is removed, RemoveLive needs an archive, and a store opened without
// one refuses to read the stream rather than serving it as empty.
func TestArchivedStreamWithoutArchive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := OpenArchive(t.TempDir())
	s, err := Open(dir, Options{Archive: a})
	if err != nil {
		t.Fatal(err)
	}
	s.Create(ctx, "x", sluice.CreateOptions{})
	st, _ := s.Open(ctx, "x")
	st.Append(ctx, 0, []byte("hello"))
	info, _ := st.Close(ctx)
	st.Release()
	if err := s.RemoveLive(ctx, "x", info.Version); err == nil {
		t.Fatal("RemoveLive of a stream not archived succeeded")
	}
	a.Put(ctx, "x", strings.NewReader("hello"), 5)
	if err := s.MarkArchived(ctx, "x", sluice.ArchiveRecord{Version: "other", Size: 5}); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("MarkArchived of another version: %v, want ErrNotFound", err)
	}
	if err := s.MarkArchived(ctx, "x", sluice.ArchiveRecord{Version: info.Version, Size: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveLive(ctx, "x", info.Version); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st, err := s2.Open(ctx, "x"); err == nil {
		st.Release()
		t.Fatal("a store with no archive opened an archived stream whose live copy is gone")
	}
}
