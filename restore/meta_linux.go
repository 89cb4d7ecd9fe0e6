package restore

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// futimens sets the access and modification times of the file open as fd
// (utimensat with a NULL path), with nanosecond precision.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
