package file

import (
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the JetStream store on local disk.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, max int64) sluice.Store {
		return openStore(t, t.TempDir(), Options{MaxStreamSize: max})
	})
}
