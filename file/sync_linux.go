package file

import (
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// syncsWhole reports whether one syncfs of dir covers the store: the directories it
// writes are on dir's filesystem.
func syncsWhole(dir string) bool {
	var root syscall.Stat_t
	if syscall.Stat(dir, &root) != nil {
		return false
	}
	for _, sub := range []string{"streams", "trash"} {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, sub), &st) != nil || st.Dev != root.Dev {
			return false
		}
	}
	return true
}

// syncfs makes every file of dir's filesystem durable.
func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	c, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: serr}
	}
	return nil
}
