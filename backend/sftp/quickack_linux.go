package sftp

import "syscall"

// quickAck makes the kernel acknowledge received data at once (until it
// decides the connection is interactive again, hence once per read).
func quickAck(sc syscall.RawConn) {
	_ = sc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
