package nats

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the file store on JetStream, with
// chunks of 4 bytes, so that most writes take several messages (an atomic batch).
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) sluice.ArchivableStore {
		opts := Options{MaxStreamSize: o.MaxStreamSize, Archive: o.Archive, ChunkSize: 4, ArchiveMaxAge: o.ArchiveMaxAge}
		if o.ArchiveMaxAge > 0 {
			opts.SweepInterval = 100 * time.Millisecond
		}
		return newStore(t, shared, opts)
	})
}
