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
// files)": with stderr on a terminal, sluice push draws its progress line there, ending
// with the whole file confirmed, and the file is stored exactly.
func TestPushProgressOnTerminal(t *testing.T) {
	master, tty := openPTY(t)
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	dir := t.TempDir()
	content := testContent(4 << 20)
	file := filepath.Join(dir, "big.log")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	url := srv.url + "/streams/push/progress"
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
	var shown []byte
	select {
	case shown = <-screen:
	case <-ctx.Done():
		t.Fatal("the terminal did not close")
	}
	last := strings.TrimRight(string(shown), "\r\n") // the terminal shows "\n" as "\r\n"
	if i := strings.LastIndex(last, "\r"); i >= 0 {
		last = last[i+1:]
	}
	size := byteSize(int64(len(content)))
	if !strings.HasPrefix(last, "[========================] 100%  "+size+" / "+size+"  ") || !strings.Contains(last, "/s") {
		t.Errorf("last progress line %q (of %q): want the whole file confirmed, with the rate", last, shown)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.Bytes())
	}
	if got := do(t, c, http.MethodGet, url, nil); !got.closed() || !bytes.Equal(got.body, content) {
		t.Errorf("stream closed %v, %d bytes, want the file's %d", got.closed(), len(got.body), len(content))
	}
}
