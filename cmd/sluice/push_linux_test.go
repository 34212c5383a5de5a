package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (Linux's /dev/ptmx), closed when the test ends.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlockpt: %v", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("ptsname: %v", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// TestPushProgressOnTerminal proves "a progress bar on a terminal (bytes, rate, ETA for
// files), as wide as the terminal": with stderr on a terminal of 120 columns, sluice push
// draws its progress line there, ending with the whole file confirmed; on one of 40
// columns, every drawing of the line is under 40 columns, so that none wraps (and the
// redraws do not stack up lines); and the file is stored exactly.
func TestPushProgressOnTerminal(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	dir := t.TempDir()
	content := testContent(4 << 20)
	file := filepath.Join(dir, "big.log")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	size := byteSize(int64(len(content)))
	for _, cols := range []uint16{120, 40} {
		url := fmt.Sprintf("%s/streams/push/progress-%d", srv.url, cols)
		shown := pushOnTerminal(t, dir, cols, url, file)
		// The terminal shows "\n" as "\r\n"; each drawing starts with "\r" and ends with ESC[K.
		draws := strings.Split(strings.TrimRight(shown, "\r\n"), "\r")
		for _, d := range draws {
			if d = strings.TrimSuffix(d, "\x1b[K"); len(d) >= int(cols) {
				t.Errorf("%d columns: a progress line of %d: %q", cols, len(d), d)
			}
		}
		last := strings.TrimSuffix(draws[len(draws)-1], "\x1b[K")
		want := "100%  " + size + " / " + size + "  "
		if cols == 120 {
			want = "[========================] " + want
		}
		if !strings.HasPrefix(last, want) || !strings.Contains(last, "/s") {
			t.Errorf("%d columns: last progress line %q (of %q): want the whole file confirmed, with the rate", cols, last, shown)
		}
		if got := do(t, c, http.MethodGet, url, nil); !got.closed() || !bytes.Equal(got.body, content) {
			t.Errorf("stream closed %v, %d bytes, want the file's %d", got.closed(), len(got.body), len(content))
		}
	}
}

// pushOnTerminal runs sluice push URL FILE with stderr on a terminal of cols columns,
// and returns what the terminal got.
func pushOnTerminal(t *testing.T, dir string, cols uint16, url, file string) string {
	t.Helper()
	master, tty := openPTY(t)
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := sluiceCmd(ctx, dir, "push", url, file)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child has it: the master reads EOF (EIO) once the child exits
	screen := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO when the terminal's last user is gone
		screen <- b
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("push: %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.Bytes())
	}
	select {
	case shown := <-screen:
		return string(shown)
	case <-ctx.Done():
		t.Fatal("the terminal did not close")
		return ""
	}
}
