package repo_test

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/repo"
)

// loadCounter counts the backend's Loads.
type loadCounter struct {
	backend.Backend
	loads atomic.Int64
}

func (l *loadCounter) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	l.loads.Add(1)
	return l.Backend.Load(ctx, h, off, length, fn)
}

// A file read blob by blob (how database streams are loaded) costs a few
// growing ranged Loads per pack, not one per 64 KiB chunk, and random blob
// reads stay exact.
func TestFileReaderReadsAhead(t *testing.T) {
	ctx := t.Context()
	be := &loadCounter{Backend: mem.New()}
	_, restoreKey, err := repo.Init(ctx, be, repo.InitOptions{PackSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	var want []byte
	for i := range 300 {
		b := randBytes(int64(i), 20<<10+i*37)
		blobs = append(blobs, b)
		want = append(want, b...)
	}
	ids := saveBlobs(t, w, blobs, 1)

	r, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	before := be.loads.Load()
	fr, err := r.NewFileReader(ctx, &repo.Node{Type: repo.NodeFile, Content: ids})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(fr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file of %d bytes read back as %d different bytes", len(want), len(got))
	}
	// ~6.7 MiB in ~105 age chunks: one Load per chunk without read-ahead.
	if n := be.loads.Load() - before; n > 16 {
		t.Fatalf("%d Loads to read %d bytes sequentially", n, len(want))
	}

	rnd := rand.New(rand.NewSource(5))
	for _, i := range rnd.Perm(len(ids)) {
		data, err := r.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: ids[i]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, blobs[i]) {
			t.Fatalf("blob %d read at random differs", i)
		}
	}
}
