package file

import (
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the JetStream store on local disk.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) sluice.ArchivableStore {
		return openStore(t, t.TempDir(), Options{MaxStreamSize: o.MaxStreamSize, Archive: o.Archive})
	})
}
