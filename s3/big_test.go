package s3_test

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/archivetest"
)

// TestS3ArchiveHeapBound proves "a 1 GiB stream archived while the server's heap stays
// under a documented bound": the heap in use grows by less than 64 MiB while a 1 GiB
// stream is uploaded (16 MiB parts, the default) and verified. It writes 1 GiB to disk
// twice (store and gateway), so it runs only with SLUICE_BIG=1; docs/design.md reports
// its measurement.
func TestS3ArchiveHeapBound(t *testing.T) {
	if os.Getenv("SLUICE_BIG") == "" {
		t.Skip("set SLUICE_BIG=1 to archive a 1 GiB stream and measure the heap")
	}
	const size = 1 << 30
	const bound = 64 << 20
	ar := newArchiveWith(t, gateway, 0) // the default part size
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	ctx := context.Background()
	if _, _, err := node.Store.Create(ctx, "big", sluice.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := node.Store.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	chunk := archivetest.Data(1 << 20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := st.Append(ctx, off, chunk); err != nil {
			t.Fatal(err)
		}
	}
	chunk = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	var mu sync.Mutex
	peak := base
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
		}
	})
	start := time.Now()
	if _, err := st.Close(ctx); err != nil { // the Archiver starts here
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for node.Counter(t, "sluice_archive_uploads_succeeded_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no archive within 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if n, err := ar.Stat(ctx, "big"); err != nil || n != size {
		t.Fatalf("archived object: %d bytes, %v", n, err)
	}
	if f := node.Counter(t, "sluice_archive_uploads_failed_total"); f != 0 {
		t.Errorf("%v failed attempts", f)
	}
	growth := int64(peak) - int64(base)
	t.Logf("1 GiB archived and verified in %v (%.0f MiB/s); HeapInuse %d MiB before, peak %d MiB, growth %.1f MiB",
		elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds(), base>>20, peak>>20, float64(growth)/(1<<20))
	if growth > bound {
		t.Errorf("heap grew by %d MiB while archiving, bound %d MiB", growth>>20, bound>>20)
	}
}
