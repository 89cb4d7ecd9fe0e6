package sftp

import (
	"net"
	"syscall"
	"testing"
)

// quickAckOn reports whether the kernel acknowledges c's received data at
// once (TCP_QUICKACK reads back 1 outside "pingpong" mode).
func quickAckOn(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	sc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := sc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v == 1
}

func setDelayedAcks(t *testing.T, c *net.TCPConn) {
	t.Helper()
	sc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
}

// TestEagerAcks checks that reads made while eagerAcks is on switch the
// socket to immediate acknowledgements, and that done drops the count.
func TestEagerAcks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(srv)
			return
		}
		srv <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	peer := <-srv
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	tc := raw.(*net.TCPConn)
	tr := newReadTracker(raw)

	setDelayedAcks(t, tc)
	if quickAckOn(t, tc) {
		t.Fatal("setup: TCP_QUICKACK 0 did not turn delayed acks on")
	}
	done := tr.eagerAcks()
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := tr.Read(buf); err != nil {
		t.Fatal(err)
	}
	if !quickAckOn(t, tc) {
		t.Fatal("a read while eagerAcks is on left delayed acks on")
	}
	done()
	if n := tr.eager.Load(); n != 0 {
		t.Fatalf("eager count after done = %d, want 0", n)
	}
	// A tracker over a conn without a socket (tests, pipes) is a no-op.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	pt := newReadTracker(a)
	pt.eagerAcks()()
	var nilTracker *readTracker
	nilTracker.eagerAcks()()
}
