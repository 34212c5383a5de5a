package file

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the JetStream store on local disk.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) sluice.ArchivableStore {
		opts := Options{MaxStreamSize: o.MaxStreamSize, Archive: o.Archive, ArchiveMaxAge: o.ArchiveMaxAge}
		if o.ArchiveMaxAge > 0 {
			opts.SweepInterval = 50 * time.Millisecond
		}
		return openStore(t, t.TempDir(), opts)
	})
}
