// Package backendtest holds the conformance suite every backend.Backend
// must pass, and a fault-injecting wrapper for error-path tests.
package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/shopvault/shopvault/backend"
)

func randomData(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf)
	return buf, hex.EncodeToString(sum[:])
}

func load(t testing.TB, be backend.Backend, h backend.Handle, off, length int64) []byte {
	t.Helper()
	var got []byte
	err := be.Load(context.Background(), h, off, length, func(r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	if err != nil {
		t.Fatalf("load %v: %v", h, err)
	}
	return got
}

// RunSuite runs the conformance tests against backends made by open. Each
// subtest calls open once and expects an empty repository.
func RunSuite(t *testing.T, open func(t *testing.T) backend.Backend) {
	ctx := context.Background()
	t.Run("SaveLoadStat", func(t *testing.T) {
		be := open(t)
		for _, typ := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile, backend.KeyFile, backend.LockFile, backend.RefsFile, backend.ConfigFile} {
			data, name := randomData(t, 100_000)
			h := backend.Handle{Type: typ, Name: name}
			if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatalf("save %v: %v", h, err)
			}
			if got := load(t, be, h, 0, 0); !bytes.Equal(got, data) {
				t.Fatalf("%v: loaded %d bytes that differ from the %d saved", h, len(got), len(data))
			}
			fi, err := be.Stat(ctx, h)
			if err != nil {
				t.Fatalf("stat %v: %v", h, err)
			}
			if fi.Size != int64(len(data)) {
				t.Fatalf("stat %v: size %d, want %d", h, fi.Size, len(data))
			}
		}
	})
	t.Run("RangedLoad", func(t *testing.T) {
		be := open(t)
		data, name := randomData(t, 1<<20+17)
		h := backend.Handle{Type: backend.PackFile, Name: name}
		if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int64{{0, 1}, {1, 100}, {5000, 70000}, {int64(len(data)) - 10, 10}, {12345, 0}} {
			want := data[r[0]:]
			if r[1] > 0 {
				want = data[r[0] : r[0]+r[1]]
			}
			if got := load(t, be, h, r[0], r[1]); !bytes.Equal(got, want) {
				t.Fatalf("range %v: got %d bytes, want %d, or content differs", r, len(got), len(want))
			}
		}
		err := be.Load(ctx, h, int64(len(data))-5, 10, func(r io.Reader) error {
			_, err := io.ReadAll(r)
			return err
		})
		if err == nil {
			t.Fatal("load beyond the end succeeded, want an error")
		}
	})
	t.Run("NotExist", func(t *testing.T) {
		be := open(t)
		h := backend.Handle{Type: backend.SnapshotFile, Name: "0123456789abcdef"}
		if _, err := be.Stat(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("stat missing: got %v, want fs.ErrNotExist", err)
		}
		err := be.Load(ctx, h, 0, 0, func(io.Reader) error { return nil })
		if !backend.IsNotExist(err) {
			t.Fatalf("load missing: got %v, want fs.ErrNotExist", err)
		}
		if err := be.Remove(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("remove missing: got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("ListRemove", func(t *testing.T) {
		be := open(t)
		want := map[string]int64{}
		for i := 0; i < 40; i++ {
			data, name := randomData(t, 10+i)
			if err := be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: name}, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			want[name] = int64(len(data))
		}
		data, name := randomData(t, 5)
		if err := be.Save(ctx, backend.Handle{Type: backend.IndexFile, Name: name}, bytes.NewReader(data), 5); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
			got[fi.Name] = fi.Size
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
			t.Fatalf("list: got %v, want %v", sorted(got), sorted(want))
		}
		stop := errors.New("stop")
		if err := be.List(ctx, backend.PackFile, func(backend.FileInfo) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("list: callback error not returned, got %v", err)
		}
		for n := range want {
			if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		count := 0
		_ = be.List(ctx, backend.PackFile, func(backend.FileInfo) error { count++; return nil })
		if count != 0 {
			t.Fatalf("after remove, %d packs are still listed", count)
		}
	})
	t.Run("SaveIdempotentAndRetry", func(t *testing.T) {
		be := open(t)
		data, name := randomData(t, 3000)
		h := backend.Handle{Type: backend.PackFile, Name: name}
		rd := bytes.NewReader(data)
		_, _ = rd.Seek(1000, io.SeekStart) // Save must rewind
		for i := 0; i < 2; i++ {
			if err := be.Save(ctx, h, rd, int64(len(data))); err != nil {
				t.Fatalf("save #%d: %v", i+1, err)
			}
		}
		if got := load(t, be, h, 0, 0); !bytes.Equal(got, data) {
			t.Fatal("content differs after saving twice")
		}
	})
	t.Run("FailedSaveLeavesNothing", func(t *testing.T) {
		be := open(t)
		data, name := randomData(t, 50_000)
		h := backend.Handle{Type: backend.PackFile, Name: name}
		// size mismatch: the reader is shorter than announced
		if err := be.Save(ctx, h, bytes.NewReader(data[:100]), int64(len(data))); err == nil {
			t.Fatal("save of a short reader succeeded")
		}
		if _, err := be.Stat(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("a failed save left a file: stat = %v", err)
		}
		count := 0
		_ = be.List(ctx, backend.PackFile, func(backend.FileInfo) error { count++; return nil })
		if count != 0 {
			t.Fatalf("a failed save left %d listed files", count)
		}
	})
	t.Run("InvalidNames", func(t *testing.T) {
		be := open(t)
		for _, n := range []string{"", "..", "../x", "a/b"} {
			h := backend.Handle{Type: backend.SnapshotFile, Name: n}
			if err := be.Save(ctx, h, bytes.NewReader(nil), 0); err == nil {
				t.Fatalf("save with name %q succeeded", n)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		be := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data, name := randomData(t, 200_000)
				h := backend.Handle{Type: backend.PackFile, Name: name}
				if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- err
					return
				}
				err := be.Load(ctx, h, 0, 0, func(r io.Reader) error {
					got, err := io.ReadAll(r)
					if err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("%s: content differs", name)
					}
					return err
				})
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func sorted(m map[string]int64) []string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(s)
	return s
}
