//go:build !linux

package sftp

import "syscall"

// quickAck is Linux's TCP_QUICKACK; elsewhere acks are left to the kernel.
func quickAck(syscall.RawConn) {}
