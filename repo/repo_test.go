package repo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/repo"
)

func initRepo(t *testing.T, be backend.Backend) (host, restore *repo.KeyFile) {
	t.Helper()
	host, restore, err := repo.Init(t.Context(), be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return host, restore
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func saveSome(t *testing.T, r *repo.Repository, blobs [][]byte) []repo.ID {
	t.Helper()
	return saveBlobs(t, r, blobs, 2)
}

// saveBlobs stores blobs as data blobs with a saver of the given
// concurrency (1 keeps them in order in the packs) and returns their ids.
func saveBlobs(t *testing.T, r *repo.Repository, blobs [][]byte, concurrency int) []repo.ID {
	t.Helper()
	ctx := t.Context()
	s := r.NewBlobSaver(ctx, concurrency)
	var ids []repo.ID
	for _, b := range blobs {
		id, _, err := s.Save(ctx, repo.DataBlob, b)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestHostKeyWritesButCannotRead(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	hostKey, restoreKey := initRepo(t, be)

	hr, err := repo.Open(ctx, be, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	if hr.CanRead() {
		t.Fatal("host key claims it can read packs")
	}
	var blobs [][]byte
	for i := 0; i < 50; i++ {
		blobs = append(blobs, randBytes(int64(i), 40_000))
	}
	blobs = append(blobs, bytes.Repeat([]byte("compressible text "), 5000))
	ids := saveSome(t, hr, blobs)
	if _, err := hr.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: ids[0]}, nil); !errors.Is(err, repo.ErrNeedRestoreKey) {
		t.Fatalf("host key LoadBlob: got %v, want ErrNeedRestoreKey", err)
	}

	// The restore key reads everything back.
	rr, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		got, err := rr.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: id}, nil)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d differs", i)
		}
	}
	// A second save of the same data stores nothing.
	hr2, _ := repo.Open(ctx, be, hostKey)
	if err := hr2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	s := hr2.NewBlobSaver(ctx, 1)
	for _, b := range blobs {
		if _, added, err := s.Save(ctx, repo.DataBlob, b); err != nil || added {
			t.Fatalf("re-save: added=%v err=%v", added, err)
		}
	}
	if err := s.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Packs != 0 {
		t.Fatalf("re-save uploaded %d packs", st.Packs)
	}
	res, err := hr2.Check(ctx, repo.CheckOptions{})
	if err != nil || !res.OK() {
		t.Fatalf("check with host key: %v %v", err, res.Problems)
	}
	if _, err := hr2.Check(ctx, repo.CheckOptions{ReadData: true}); !errors.Is(err, repo.ErrNeedRestoreKey) {
		t.Fatalf("check --read-data with host key: %v", err)
	}
	res, err = rr.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !res.OK() || res.Blobs != len(blobs) {
		t.Fatalf("check --read-data: %v %v blobs=%d", err, res.Problems, res.Blobs)
	}
}

func TestWrongKeyAndPins(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	other := mem.New()
	otherHost, _ := initRepo(t, other)
	if _, err := repo.Open(ctx, be, otherHost); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("open with another repository's key: %v", err)
	}
	// Same identity, but a tampered config naming another restore recipient.
	tampered := *restoreKey
	tampered.PinRestore = []string{"age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsq9xxwa"}
	if _, err := repo.Open(ctx, be, &tampered); !errors.Is(err, repo.ErrRecipientMismatch) {
		t.Fatalf("open with mismatching pins: %v", err)
	}
	// A plain key file without repository or pins, wrong identity.
	plain := *otherHost
	plain.Repository, plain.PinHost, plain.PinRestore = "", nil, nil
	if _, err := repo.Open(ctx, be, &plain); !errors.Is(err, repo.ErrWrongKey) {
		t.Fatalf("open with an unrelated plain key: %v", err)
	}
	if _, err := repo.Open(ctx, mem.New(), restoreKey); !errors.Is(err, repo.ErrNoRepository) {
		t.Fatalf("open of an empty backend: %v", err)
	}
}

func TestCorruptionDetected(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	r, _ := repo.Open(ctx, be, restoreKey)
	ids := saveSome(t, r, [][]byte{randBytes(1, 300_000), randBytes(2, 300_000)})
	var pack string
	_ = be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { pack = fi.Name; return nil })

	for _, tc := range []struct {
		name    string
		corrupt func(h backend.Handle, off int64, b []byte) []byte
	}{
		{"bitflip", func(h backend.Handle, off int64, b []byte) []byte {
			if h.Type == backend.PackFile && len(b) > 1000 {
				b = bytes.Clone(b)
				b[len(b)/2] ^= 1
			}
			return b
		}},
		{"truncated", func(h backend.Handle, off int64, b []byte) []byte {
			if h.Type == backend.PackFile {
				return b[:len(b)/2]
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &backendtest.Faulty{Backend: be, Corrupt: tc.corrupt}
			fr, err := repo.Open(ctx, f, restoreKey)
			if err != nil {
				t.Fatal(err)
			}
			res, err := fr.Check(ctx, repo.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() {
				t.Fatal("check found no problem in a damaged pack")
			}
			if !bytes.Contains([]byte(errors.Join(res.Problems...).Error()), []byte(pack[:8])) {
				t.Fatalf("problems do not name the pack %s: %v", pack[:8], res.Problems)
			}
			_, err = fr.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: ids[1]}, nil)
			var ce *repo.CorruptError
			if !errors.As(err, &ce) && err == nil {
				t.Fatalf("load from damaged pack: %v", err)
			}
		})
	}
}

func TestLocks(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	r, _ := repo.Open(ctx, be, restoreKey)
	l1, err := r.Lock(ctx, repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := r.Lock(ctx, repo.LockOptions{})
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	var le *repo.LockedError
	if _, err := r.Lock(ctx, repo.LockOptions{Exclusive: true}); !errors.As(err, &le) {
		t.Fatalf("exclusive over shared: %v", err)
	}
	_ = l1.Unlock(ctx)
	_ = l2.Unlock(ctx)
	// A lock of a dead process on this host is taken over.
	dead := func(int) bool { return false }
	if _, err := r.Lock(ctx, repo.LockOptions{Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	var logged string
	l4, err := r.Lock(ctx, repo.LockOptions{Exclusive: true, ProcessAlive: dead, Logf: func(f string, a ...any) { logged = f }})
	if err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	if logged == "" {
		t.Fatal("taking over a stale lock was not logged")
	}
	_ = l4.Unlock(ctx)
	_ = context.Background()
}

func TestDamagedIndexAndSnapshotAreNamed(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	r, _ := repo.Open(ctx, be, restoreKey)
	sn := snapshotOf(t, r, [][]byte{randBytes(7, 1000)})
	var index string
	_ = be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error { index = fi.Name; return nil })
	for _, tc := range []struct {
		name string
		h    backend.Handle
		mod  func([]byte) []byte
	}{
		{"index bitflip", backend.Handle{Type: backend.IndexFile, Name: index}, func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-3] ^= 0x40; return b }},
		{"index truncated", backend.Handle{Type: backend.IndexFile, Name: index}, func(b []byte) []byte { return b[:len(b)/2] }},
		{"snapshot bitflip", backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}, func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }},
		{"snapshot empty", backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}, func(b []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &backendtest.Faulty{Backend: be, Corrupt: func(h backend.Handle, off int64, b []byte) []byte {
				if h == tc.h {
					return tc.mod(b)
				}
				return b
			}}
			fr, err := repo.Open(ctx, f, restoreKey)
			if err != nil {
				t.Fatal(err)
			}
			res, err := fr.Check(ctx, repo.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			all := errors.Join(res.Problems...)
			var ce *repo.CorruptError
			if res.OK() || !errors.As(all, &ce) || !strings.Contains(all.Error(), tc.h.Name[:8]) {
				t.Fatalf("check did not name the damaged %s: %v", tc.h, res.Problems)
			}
		})
	}
}

// loadRecorder records the ranges of pack loads.
type loadRecorder struct {
	backend.Backend
	mu     sync.Mutex
	ranges map[string][2]int64
}

func (l *loadRecorder) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	if h.Type == backend.PackFile {
		l.mu.Lock()
		l.ranges[h.Name] = [2]int64{off, length}
		l.mu.Unlock()
	}
	return l.Backend.Load(ctx, h, off, length, fn)
}

// StreamPack reads a pack as the range of its indexed size, not "to the
// end": over SFTP a read to an unknown end finishes with EOF statuses that
// sshd holds back for a delayed acknowledgement.
func TestStreamPackReadsIndexedSize(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	r, _ := repo.Open(ctx, be, restoreKey)
	ids := saveBlobs(t, r, [][]byte{randBytes(1, 100_000), randBytes(2, 200_000)}, 1)
	sizes := map[string]int64{}
	_ = be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { sizes[fi.Name] = fi.Size; return nil })
	rec := &loadRecorder{Backend: be, ranges: map[string][2]int64{}}
	rr, err := repo.Open(ctx, rec, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	e, ok := rr.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: ids[1]})
	if !ok {
		t.Fatal("blob not indexed")
	}
	got := 0
	if err := rr.StreamPack(ctx, e.Pack, []repo.PackedBlob{e.PackedBlob}, func(b repo.PackedBlob, data []byte) error {
		if !bytes.Equal(data, randBytes(2, 200_000)) {
			t.Fatal("streamed blob differs from the one saved")
		}
		got++
		return nil
	}); err != nil || got != 1 {
		t.Fatalf("stream pack: %d blobs, %v", got, err)
	}
	want := [2]int64{0, sizes[e.Pack.String()]}
	if rec.ranges[e.Pack.String()] != want || want[1] == 0 {
		t.Fatalf("pack loaded as range %v, want %v (its stored size)", rec.ranges[e.Pack.String()], want)
	}
}
