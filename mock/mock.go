// Package mock holds function-field implementations of the domain's interfaces, for
// tests that inject faults (a store whose append fails, an archive that stalls) or
// observe calls. Each method calls the field of the same name, which a test sets;
// calling a method whose field is nil panics, so that an unexpected call is loud.
// Tests of real behaviour use the real stores; these are for what those cannot be made
// to do.
package mock

import (
	"context"
	"io"
	"time"

	"github.com/sluicehq/sluice"
)

// Store is a sluice.ArchivableStore.
type Store struct {
	CreateFn       func(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error)
	OpenFn         func(ctx context.Context, key string) (sluice.Stream, error)
	PurgeFn        func(ctx context.Context, key string) error
	NotifyFn       func() <-chan struct{}
	ClosedSinceFn  func(cursor uint64) ([]string, uint64, bool)
	LiveClosedFn   func(ctx context.Context) ([]sluice.LiveClosed, error)
	MarkArchivedFn func(ctx context.Context, key string, rec sluice.ArchiveRecord) error
	ArchivedFn     func(ctx context.Context, key string) (*sluice.ArchiveRecord, error)
	RemoveLiveFn   func(ctx context.Context, key, version string) error
}

var _ sluice.ArchivableStore = (*Store)(nil)

// Create calls CreateFn.
func (s *Store) Create(ctx context.Context, key string, opts sluice.CreateOptions) (sluice.Info, bool, error) {
	return s.CreateFn(ctx, key, opts)
}

// Open calls OpenFn.
func (s *Store) Open(ctx context.Context, key string) (sluice.Stream, error) {
	return s.OpenFn(ctx, key)
}

// Purge calls PurgeFn.
func (s *Store) Purge(ctx context.Context, key string) error { return s.PurgeFn(ctx, key) }

// Notify calls NotifyFn.
func (s *Store) Notify() <-chan struct{} { return s.NotifyFn() }

// ClosedSince calls ClosedSinceFn.
func (s *Store) ClosedSince(cursor uint64) ([]string, uint64, bool) { return s.ClosedSinceFn(cursor) }

// LiveClosed calls LiveClosedFn.
func (s *Store) LiveClosed(ctx context.Context) ([]sluice.LiveClosed, error) {
	return s.LiveClosedFn(ctx)
}

// MarkArchived calls MarkArchivedFn.
func (s *Store) MarkArchived(ctx context.Context, key string, rec sluice.ArchiveRecord) error {
	return s.MarkArchivedFn(ctx, key, rec)
}

// Archived calls ArchivedFn.
func (s *Store) Archived(ctx context.Context, key string) (*sluice.ArchiveRecord, error) {
	return s.ArchivedFn(ctx, key)
}

// RemoveLive calls RemoveLiveFn.
func (s *Store) RemoveLive(ctx context.Context, key, version string) error {
	return s.RemoveLiveFn(ctx, key, version)
}

// Stream is a sluice.Stream.
type Stream struct {
	InfoFn    func() sluice.Info
	AppendFn  func(ctx context.Context, off int64, p []byte) (sluice.Info, error)
	WriteFn   func(ctx context.Context, w sluice.Write) (sluice.Written, error)
	CloseFn   func(ctx context.Context) (sluice.Info, error)
	ReadFn    func(ctx context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error)
	ReleaseFn func()
}

var _ sluice.Stream = (*Stream)(nil)

// Info calls InfoFn.
func (s *Stream) Info() sluice.Info { return s.InfoFn() }

// Append calls AppendFn.
func (s *Stream) Append(ctx context.Context, off int64, p []byte) (sluice.Info, error) {
	return s.AppendFn(ctx, off, p)
}

// Write calls WriteFn.
func (s *Stream) Write(ctx context.Context, w sluice.Write) (sluice.Written, error) {
	return s.WriteFn(ctx, w)
}

// Close calls CloseFn.
func (s *Stream) Close(ctx context.Context) (sluice.Info, error) { return s.CloseFn(ctx) }

// Read calls ReadFn.
func (s *Stream) Read(ctx context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
	return s.ReadFn(ctx, p, off)
}

// Release calls ReleaseFn.
func (s *Stream) Release() { s.ReleaseFn() }

// Archive is a sluice.Archive.
type Archive struct {
	PutFn    func(ctx context.Context, key string, r io.Reader, size int64) error
	OpenFn   func(ctx context.Context, key string, off int64) (io.ReadCloser, error)
	StatFn   func(ctx context.Context, key string) (int64, error)
	DeleteFn func(ctx context.Context, key string) error
}

var _ sluice.Archive = (*Archive)(nil)

// Put calls PutFn.
func (a *Archive) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return a.PutFn(ctx, key, r, size)
}

// Open calls OpenFn.
func (a *Archive) Open(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
	return a.OpenFn(ctx, key, off)
}

// Stat calls StatFn.
func (a *Archive) Stat(ctx context.Context, key string) (int64, error) { return a.StatFn(ctx, key) }

// Delete calls DeleteFn.
func (a *Archive) Delete(ctx context.Context, key string) error { return a.DeleteFn(ctx, key) }

// Leaser is a sluice.Leaser.
type Leaser struct {
	LeaseFn   func(ctx context.Context, key string, ttl time.Duration) (bool, error)
	UnleaseFn func(ctx context.Context, key string) error
}

var _ sluice.Leaser = (*Leaser)(nil)

// Lease calls LeaseFn.
func (l *Leaser) Lease(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return l.LeaseFn(ctx, key, ttl)
}

// Unlease calls UnleaseFn.
func (l *Leaser) Unlease(ctx context.Context, key string) error { return l.UnleaseFn(ctx, key) }

// Authorizer is a sluice.Authorizer.
type Authorizer struct {
	AuthorizeFn func(ctx context.Context, key string, op sluice.Op) error
}

var _ sluice.Authorizer = (*Authorizer)(nil)

// Authorize calls AuthorizeFn.
func (a *Authorizer) Authorize(ctx context.Context, key string, op sluice.Op) error {
	return a.AuthorizeFn(ctx, key, op)
}
