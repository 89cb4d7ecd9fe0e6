package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

func aheadTypes() []backend.FileType {
	return []backend.FileType{backend.KeyFile, backend.IndexFile, backend.SnapshotFile, backend.RefsFile}
}

// aheadRepo writes a small repository (config, and files of every type
// read ahead plus a pack) straight into the server's directory and returns
// a Config for it and the files by handle.
func aheadRepo(t *testing.T, s *sshdtest.Server) (Config, map[backend.Handle][]byte) {
	t.Helper()
	cfg := testConfig(t, s, filepath.Join(s.Root, t.Name()), 2)
	files := map[backend.Handle][]byte{{Type: backend.ConfigFile}: []byte("config bytes")}
	for i, typ := range append(aheadTypes(), backend.PackFile) {
		for j := range 3 {
			name := fmt.Sprintf("%02x%02x%060d", i, j, j)
			files[backend.Handle{Type: typ, Name: name}] = bytes.Repeat([]byte{byte(i), byte(j)}, 1000*(j+1)+i)
		}
	}
	for h, data := range files {
		p := filepath.Join(cfg.Path, backend.Path(h))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, files
}

// openAhead opens cfg reading aheadTypes ahead and waits until all of it
// has been read.
func openAhead(t *testing.T, cfg Config) *Backend {
	t.Helper()
	cfg.ReadAhead = aheadTypes()
	be, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	ra := be.ahead
	// The listings first: each registers its files before it is done.
	for _, kind := range []string{"lists", "files"} {
		var dones []chan struct{}
		ra.mu.Lock()
		if kind == "lists" {
			for _, l := range ra.lists {
				dones = append(dones, l.done)
			}
		} else {
			for _, f := range ra.files {
				dones = append(dones, f.done)
			}
		}
		ra.mu.Unlock()
		for _, d := range dones {
			<-d
		}
	}
	return be
}

func listNames(t *testing.T, be *Backend, typ backend.FileType) []string {
	t.Helper()
	var names []string
	if err := be.List(t.Context(), typ, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func loadAll(be *Backend, h backend.Handle, off, length int64) ([]byte, error) {
	var got []byte
	err := be.Load(context.Background(), h, off, length, func(r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	return got, err
}

// removeAll deletes every file of files on the server.
func removeAll(t *testing.T, cfg Config, files map[backend.Handle][]byte) {
	t.Helper()
	for h := range files {
		if err := os.Remove(filepath.Join(cfg.Path, backend.Path(h))); err != nil {
			t.Fatal(err)
		}
	}
}

// What Open read ahead is what the repository held when it was opened,
// served once: with every file deleted on the server afterwards, the first
// listing and load of each still see it, the second ones do not.
func TestReadAheadServesOpenStateOnce(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, files := aheadRepo(t, s)
	be := openAhead(t, cfg)
	removeAll(t, cfg, files)

	for _, typ := range aheadTypes() {
		var want []string
		for h := range files {
			if h.Type == typ {
				want = append(want, h.Name)
			}
		}
		slices.Sort(want)
		if got := listNames(t, be, typ); !slices.Equal(got, want) {
			t.Fatalf("first list of %s: %v, want the files at open %v", typ, got, want)
		}
		if got := listNames(t, be, typ); len(got) != 0 {
			t.Fatalf("second list of %s: %v, want the server's (empty) directory", typ, got)
		}
	}
	for h, data := range files {
		if h.Type == backend.PackFile {
			if _, err := loadAll(be, h, 0, 0); !backend.IsNotExist(err) {
				t.Fatalf("load %s: %v, want not-exist (packs are never read ahead)", h, err)
			}
			continue
		}
		got, err := loadAll(be, h, 0, 0)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("first load of %s: %d bytes, %v; want the %d bytes read ahead", h, len(got), err, len(data))
		}
		if _, err := loadAll(be, h, 0, 0); !backend.IsNotExist(err) {
			t.Fatalf("second load of %s: %v, want not-exist from the server", h, err)
		}
	}
}

// Ranges of a file read ahead are served as Load serves them, and a range
// past its end fails the same way.
func TestReadAheadRanges(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, files := aheadRepo(t, s)
	var idx []backend.Handle
	for h := range files {
		if h.Type == backend.IndexFile {
			idx = append(idx, h)
		}
	}
	slices.SortFunc(idx, func(a, b backend.Handle) int { return len(files[a]) - len(files[b]) })
	for i, r := range [][2]int64{{7, 100}, {123, 0}, {0, 0}} {
		be := openAhead(t, cfg)
		h := idx[i]
		data := files[h]
		want := data[r[0]:]
		if r[1] > 0 {
			want = data[r[0] : r[0]+r[1]]
		}
		removeAll(t, cfg, map[backend.Handle][]byte{h: nil})
		got, err := loadAll(be, h, r[0], r[1])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("range %v of %s: %d bytes, %v; want %d", r, h, len(got), err, len(want))
		}
		if err := os.WriteFile(filepath.Join(cfg.Path, backend.Path(h)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	be := openAhead(t, cfg)
	h := idx[0]
	_, err := loadAll(be, h, int64(len(files[h]))-5, 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("range past the end of %s: %v, want io.ErrUnexpectedEOF", h, err)
	}
}

// The first write drops everything read ahead: a lock taken after the open
// must not be followed by listings from before it.
func TestReadAheadDroppedByWrite(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, files := aheadRepo(t, s)
	be := openAhead(t, cfg)
	other, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	late := backend.Handle{Type: backend.SnapshotFile, Name: "ff" + fmt.Sprintf("%062d", 1)}
	if err := other.Save(t.Context(), late, bytes.NewReader([]byte("late")), 4); err != nil {
		t.Fatal(err)
	}
	lock := backend.Handle{Type: backend.LockFile, Name: "lock1"}
	if err := be.Save(t.Context(), lock, bytes.NewReader([]byte("lock")), 4); err != nil {
		t.Fatal(err)
	}
	if got := listNames(t, be, backend.SnapshotFile); !slices.Contains(got, late.Name) {
		t.Fatalf("snapshots listed after a lock: %v, missing %s saved before the lock", got, late.Name)
	}
	var some backend.Handle
	for h := range files {
		if h.Type == backend.IndexFile {
			some = h
		}
	}
	removeAll(t, cfg, map[backend.Handle][]byte{some: nil})
	if _, err := loadAll(be, some, 0, 0); !backend.IsNotExist(err) {
		t.Fatalf("load of %s removed after the write: %v, want not-exist", some, err)
	}
}

// What was read ahead goes stale after aheadMaxAge.
func TestReadAheadExpires(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, files := aheadRepo(t, s)
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	be := openAhead(t, cfg)
	removeAll(t, cfg, files)
	mu.Lock()
	now = now.Add(aheadMaxAge)
	mu.Unlock()
	if got := listNames(t, be, backend.KeyFile); len(got) != 0 {
		t.Fatalf("keys listed %s after open: %v, want the server's (empty) directory", aheadMaxAge, got)
	}
	for h := range files {
		if _, err := loadAll(be, h, 0, 0); !backend.IsNotExist(err) {
			t.Fatalf("load of %s %s after open: %v, want not-exist", h, aheadMaxAge, err)
		}
	}
}

// writeAged writes n files of size bytes named by format in dir, the i-th
// modified i minutes after an hour ago (older than aheadRepo's files).
func writeAged(t *testing.T, dir, format string, n, size int) {
	t.Helper()
	base := time.Now().Add(-time.Hour)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf(format, i))
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

// Only the newest files that fit in a type's budget are read ahead.
func TestReadAheadBudget(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, _ := aheadRepo(t, s)
	writeAged(t, filepath.Join(cfg.Path, "keys"), "big%d", 3, int(aheadBudget(backend.KeyFile)/3)+1)
	be := openAhead(t, cfg)
	be.ahead.mu.Lock()
	defer be.ahead.mu.Unlock()
	var got []string
	for h := range be.ahead.files {
		if h.Type == backend.KeyFile && len(h.Name) == 4 {
			got = append(got, h.Name)
		}
	}
	slices.Sort(got)
	if want := []string{"big1", "big2"}; !slices.Equal(got, want) {
		t.Fatalf("big key files read ahead: %v, want the two newest %v", got, want)
	}
}

// A load of a file whose read ahead has not begun does not wait for it:
// the caller loads it, and the read ahead skips it when its turn comes.
func TestReadAheadTakeBeforeStart(t *testing.T) {
	ra := &metaAhead{now: time.Now, cancel: func() {}, started: time.Now(),
		lists: map[backend.FileType]*aheadList{}, files: map[backend.Handle]*aheadFile{}}
	ra.expiry = time.AfterFunc(time.Hour, func() {})
	b := &Backend{ahead: ra}
	h := backend.Handle{Type: backend.SnapshotFile, Name: "ab"}
	ra.mu.Lock()
	f := ra.addFile(h)
	ra.mu.Unlock()
	taken := make(chan bool)
	go func() {
		_, ok, _ := ra.takeFile(context.Background(), h)
		taken <- ok
	}()
	select {
	case ok := <-taken:
		if ok {
			t.Fatal("a read ahead that never ran served data")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("takeFile waited for a read ahead that had not begun")
	}
	// Its turn comes: no load (b has no connections: one would panic).
	b.loadAhead(context.Background(), make(chan struct{}, 1), h, 0, f)
	if !errors.Is(f.err, errAheadSkipped) {
		t.Fatalf("read ahead after its file was taken: %v, want errAheadSkipped", f.err)
	}
}

// A read ahead that failed is the answer (its retries are not repeated);
// one that was stopped or skipped is not.
func TestReadAheadFailureServed(t *testing.T) {
	failed := errors.New("load snapshots/ab: giving up after 9 attempts")
	for _, tc := range []struct {
		err    error
		served bool
	}{
		{failed, true},
		{fmt.Errorf("load: %w", context.Canceled), false},
		{errAheadSkipped, false},
	} {
		ra := &metaAhead{now: time.Now, cancel: func() {}, started: time.Now(),
			lists: map[backend.FileType]*aheadList{}, files: map[backend.Handle]*aheadFile{}}
		h := backend.Handle{Type: backend.SnapshotFile, Name: "ab"}
		ra.mu.Lock()
		f := ra.addFile(h)
		f.started = true
		ra.mu.Unlock()
		f.err = tc.err
		close(f.done)
		_, ok, err := ra.takeFile(context.Background(), h)
		if ok != tc.served || (ok && err != tc.err) {
			t.Fatalf("read ahead failed with %v: served %v with %v, want served %v", tc.err, ok, err, tc.served)
		}
	}
}

// At most aheadFiles files of a type are read ahead, the newest.
func TestReadAheadFileCap(t *testing.T) {
	s := sshdtest.Start(t)
	cfg, _ := aheadRepo(t, s)
	writeAged(t, filepath.Join(cfg.Path, "snapshots"), "s%03d", aheadFiles+6, 8)
	be := openAhead(t, cfg)
	be.ahead.mu.Lock()
	defer be.ahead.mu.Unlock()
	n, oldest := 0, ""
	for h := range be.ahead.files {
		if h.Type == backend.SnapshotFile {
			n++
			if len(h.Name) == 4 && (oldest == "" || h.Name < oldest) {
				oldest = h.Name
			}
		}
	}
	// The three snapshot files aheadRepo wrote are the newest (now).
	if want := fmt.Sprintf("s%03d", 6+3); n != aheadFiles || oldest != want {
		t.Fatalf("%d snapshot files read ahead, oldest %q; want %d, oldest %q", n, oldest, aheadFiles, want)
	}
}
