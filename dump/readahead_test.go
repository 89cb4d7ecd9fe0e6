package dump

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net"
	"testing"
	"time"
)

// TestReadAheadConnBytes reads a stream through readAheadConn in reads of random sizes
// while the peer writes it in writes of other random sizes: every byte arrives, in order,
// then the peer's close as io.EOF; writes go through to the peer.
func TestReadAheadConnBytes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	want := make([]byte, 3*readAheadChunk*readAheadChunks+12345) // more than the read-ahead holds
	rng.Read(want)
	a, b := net.Pipe()
	r := newReadAheadConn(a)
	defer r.Close()
	go func() {
		rest := want
		wr := rand.New(rand.NewSource(2))
		for len(rest) > 0 {
			n := min(len(rest), 1+wr.Intn(100000))
			if _, err := b.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		b.Close()
	}()
	var got []byte
	buf := make([]byte, 200000)
	for {
		n, err := r.Read(buf[:1+rng.Intn(len(buf))])
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written (equal: %v)", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("read after EOF: %d, %v", n, err)
	}

	c, d := net.Pipe()
	w := newReadAheadConn(c)
	defer w.Close()
	go func() { _, _ = w.Write([]byte("query")) }()
	q := make([]byte, 5)
	if _, err := io.ReadFull(d, q); err != nil || string(q) != "query" {
		t.Errorf("write through: %q, %v", q, err)
	}
}

// TestReadAheadConnClose: closing the connection (as the driver does when a query's context
// is cancelled) wakes a Read that waits for the server, with an error.
func TestReadAheadConnClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	r := newReadAheadConn(a)
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the Read wait
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5 s after Close")
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close: no error")
	}
}

// TestReadAheadConnPeerError: an error from the socket (here the peer's close under a
// pending Read) reaches the reader after the bytes that came before it.
func TestReadAheadConnPeerError(t *testing.T) {
	a, b := net.Pipe()
	r := newReadAheadConn(a)
	defer r.Close()
	go func() {
		_, _ = b.Write([]byte("last bytes"))
		_ = b.Close()
	}()
	got, err := io.ReadAll(r)
	if string(got) != "last bytes" || err != nil { // ReadAll turns io.EOF into nil
		t.Errorf("ReadAll = %q, %v", got, err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("then Read: %v, want io.EOF", err)
	}
}
