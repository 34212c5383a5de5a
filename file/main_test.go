package file

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, such as a store's
// background syncer that was never closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
