package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every connection by copying it back until EOF, then
// half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return l.Addr().String()
}

// startRelay serves a relay with delay in front of an echo server; serve's
// result arrives on the channel once cancel is called.
func startRelay(t *testing.T, delay time.Duration) (addr string, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	target := echoServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&proxy{target: target, delay: delay, buffer: 1 << 20}).serve(ctx, l) }()
	return l.Addr().String(), cancel, done
}

func TestRelayCopiesBothWaysInOrder(t *testing.T) {
	addr, cancel, served := startRelay(t, time.Millisecond)

	want := make([]byte, 3<<20+17) // more than the buffer: back-pressure must not lose bytes
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		_, _ = c.Write(want)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c) // ends only if the half-close travelled through the relay
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo through the relay: got %d bytes, want %d identical bytes", len(got), len(want))
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing -target"},
		{[]string{"-target", "10.0.0.1:22"}, "only 127.0.0.1"},
		{[]string{"-target", "127.0.0.1:22", "-listen", "0.0.0.0:0"}, "only 127.0.0.1"},
		{[]string{"-target", "localhost"}, "want 127.0.0.1:PORT"},
		{[]string{"-target", "127.0.0.1:22", "-delay", "-1ms"}, "-delay must be"},
	} {
		err := run(context.Background(), tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestRelayDelays: every exchange through the relay takes at least the two
// one-way delays, also for bytes that queue behind others in one batch.
func TestRelayDelays(t *testing.T) {
	const delay = 25 * time.Millisecond
	addr, cancel, _ := startRelay(t, delay)
	defer cancel()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	for i := 0; i < 5; i++ {
		start := time.Now()
		// two writes in a row: the second may ride in the first one's batch
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		if _, err := c.Write([]byte{byte(i + 100)}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []byte{byte(i), byte(i + 100)} {
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
			if buf[0] != want {
				t.Fatalf("exchange %d: got byte %d, want %d", i, buf[0], want)
			}
		}
		if rtt := time.Since(start); rtt < 2*delay+time.Duration(i)*time.Millisecond {
			t.Fatalf("exchange %d came back after %s, want at least %s", i, rtt, 2*delay+time.Duration(i)*time.Millisecond)
		}
	}
}
