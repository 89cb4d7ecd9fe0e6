package dump

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// Everything written arrives in order, whatever the write sizes, and the
// writer's close error ends the data.
func TestStreamPipeData(t *testing.T) {
	want := make([]byte, 5*pipeBufSize+12345)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	pr, pw := newStreamPipe().ends()
	boom := errors.New("producer failed")
	go func() {
		rest := want
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(100_000))
			if _, err := pw.Write(rest[:n]); err != nil {
				t.Error(err)
				return
			}
			rest = rest[n:]
		}
		pw.CloseWithError(boom)
	}()
	var got bytes.Buffer
	_, err := io.Copy(&got, pr)
	if !errors.Is(err, boom) {
		t.Fatalf("read error %v, want the writer's", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or content differs)", got.Len(), len(want))
	}

	pr, pw = newStreamPipe().ends()
	go func() { pw.Write([]byte("x")); pw.CloseWithError(nil) }()
	if b, err := io.ReadAll(pr); err != nil || string(b) != "x" {
		t.Fatalf("clean close: %q %v", b, err)
	}
}

// A reader that stops unblocks a writer that is ahead of it, with the
// reader's error.
func TestStreamPipeReaderStops(t *testing.T) {
	pr, pw := newStreamPipe().ends()
	stopped := errors.New("sink stopped")
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := pw.Write(buf); err != nil {
				errc <- err
				return
			}
		}
	}()
	if _, err := io.ReadFull(pr, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	pr.CloseWithError(stopped)
	if err := <-errc; !errors.Is(err, stopped) {
		t.Fatalf("writer error %v, want %v", err, stopped)
	}
}
