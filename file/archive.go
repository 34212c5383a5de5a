package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice"
)

// Archive is a sluice.Archive in a local directory: the embedded default. Each object is
// a file named after the SHA-256 of its key, <2 hex>/<64 hex>.log, holding exactly the
// stream's bytes. Put writes a temporary file, fsyncs it and renames it into place, so an
// object is complete or absent, even after a crash.
type Archive struct {
	dir string
}

var _ sluice.Archive = (*Archive)(nil)

// OpenArchive opens (creating it if needed) the archive under dir, and removes the
// temporary files of uploads that a crash interrupted.
func OpenArchive(dir string) (*Archive, error) {
	a := &Archive{dir: dir}
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		return nil, fmt.Errorf("file archive: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("file archive: %w", err)
	}
	return a, nil
}

// Path is the file that holds the object of key.
func (a *Archive) Path(key string) string {
	h := sha256.Sum256([]byte(key))
	x := hex.EncodeToString(h[:])
	return filepath.Join(a.dir, x[:2], x+".log")
}

// Put copies size bytes from r into the object of key, atomically.
func (a *Archive) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	f, err := os.CreateTemp(filepath.Join(a.dir, "tmp"), "put-")
	if err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	n, err := io.Copy(f, ctxReader{ctx, io.LimitReader(r, size)})
	if err == nil && n != size {
		err = fmt.Errorf("got %d bytes of %d: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	name := a.Path(key)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	return nil
}

// Open returns the object's bytes from off on.
func (a *Archive) Open(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
	f, err := os.Open(a.Path(key))
	if err != nil {
		return nil, notFound(key, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("archive %s: %w", key, err)
	}
	return f, nil
}

// Stat returns the object's size.
func (a *Archive) Stat(ctx context.Context, key string) (int64, error) {
	fi, err := os.Stat(a.Path(key))
	if err != nil {
		return 0, notFound(key, err)
	}
	return fi.Size(), nil
}

// Delete removes the object.
func (a *Archive) Delete(ctx context.Context, key string) error {
	if err := os.Remove(a.Path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	return nil
}

func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive %s: %w", key, sluice.ErrNotFound)
	}
	return fmt.Errorf("archive %s: %w", key, err)
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Ready reports whether the archive can write: a file is created in its directory.
func (a *Archive) Ready(ctx context.Context) error {
	f, err := os.CreateTemp(filepath.Join(a.dir, "tmp"), "ready-")
	if err != nil {
		return fmt.Errorf("file archive: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}
