package chunk

import (
	"bytes"
	"io"
	"math/rand"
	"testing"
)

func split(t *testing.T, data []byte, pol Pol, p Params) [][]byte {
	t.Helper()
	c := New(bytes.NewReader(data), pol, p)
	var out [][]byte
	for {
		ch, err := c.Next(make([]byte, p.MaxSize))
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ch)
	}
}

func TestChunksReassembleAndRespectBounds(t *testing.T) {
	pol, err := RandomPol()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(data)
	p := SQLParams
	chunks := split(t, data, pol, p)
	if len(chunks) < 10 {
		t.Fatalf("3 MiB at 32 KiB average gave only %d chunks", len(chunks))
	}
	var joined []byte
	for i, ch := range chunks {
		if i < len(chunks)-1 && (uint(len(ch)) < p.MinSize || uint(len(ch)) > p.MaxSize) {
			t.Fatalf("chunk %d has %d bytes, outside [%d, %d]", i, len(ch), p.MinSize, p.MaxSize)
		}
		joined = append(joined, ch...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("chunks do not reassemble into the input")
	}
}

func TestInsertionShiftsFewChunks(t *testing.T) {
	pol, _ := RandomPol()
	data := make([]byte, 2<<20)
	rand.New(rand.NewSource(2)).Read(data)
	modified := append(append(append([]byte{}, data[:1<<20]...), []byte("inserted row")...), data[1<<20:]...)
	a := split(t, data, pol, SQLParams)
	b := split(t, modified, pol, SQLParams)
	seen := map[string]bool{}
	for _, ch := range a {
		seen[string(ch)] = true
	}
	changed := 0
	for _, ch := range b {
		if !seen[string(ch)] {
			changed++
		}
	}
	if changed == 0 || changed > 3 {
		t.Fatalf("an insertion changed %d of %d chunks, want 1..3", changed, len(b))
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{}, {MinSize: 10, MaxSize: 5, AverageBits: 15}, {MinSize: 1, MaxSize: 100 << 20, AverageBits: 20}, {MinSize: 1, MaxSize: 2, AverageBits: 30}} {
		if p.Validate() == nil {
			t.Errorf("%+v validated", p)
		}
	}
	if err := FileParams.Validate(); err != nil {
		t.Error(err)
	}
	if err := SQLParams.Validate(); err != nil {
		t.Error(err)
	}
}
