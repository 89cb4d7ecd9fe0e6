package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/repo"
)

type countingSource struct {
	backup.OS
	opens atomic.Int64
	deny  string
}

func (c *countingSource) Open(p string) (io.ReadCloser, error) {
	if c.deny != "" && p == c.deny {
		return nil, os.ErrPermission
	}
	c.opens.Add(1)
	return c.OS.Open(p)
}

func writeTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	rnd := rand.New(rand.NewSource(42))
	for i := 0; i < 60; i++ {
		dir := filepath.Join(root, "shop", "dir"+string(rune('a'+i%6)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		size := rnd.Intn(5000)
		if i%20 == 0 {
			size = 2<<20 + rnd.Intn(1<<20) // chunked
		}
		data := make([]byte, size)
		rnd.Read(data)
		p := filepath.Join(dir, "f"+string(rune('0'+i%10))+string(rune('a'+i/10)))
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		files[p] = data
	}
	if err := os.MkdirAll(filepath.Join(root, "shop", "var", "cache", "prod"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "shop", "var", "cache", "prod", "x.php"), []byte("cache"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dira", filepath.Join(root, "shop", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "shop", "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	return files
}

func newRepo(t *testing.T, be backend.Backend) (*repo.Repository, *repo.KeyFile, *repo.KeyFile) {
	t.Helper()
	host, restore, err := repo.Init(t.Context(), be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, host)
	if err != nil {
		t.Fatal(err)
	}
	return r, host, restore
}

func readFile(t *testing.T, r *repo.Repository, root repo.ID, p string) []byte {
	t.Helper()
	n, _, err := r.FindNode(t.Context(), root, p)
	if err != nil {
		t.Fatalf("find %s: %v", p, err)
	}
	var out []byte
	for _, id := range n.Content {
		b, err := r.LoadBlob(t.Context(), repo.BlobHandle{Type: repo.DataBlob, ID: id}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestBackupContentAndChangeCache(t *testing.T) {
	ctx := t.Context()
	src := t.TempDir()
	files := writeTree(t, src)
	be := mem.New()
	r, host, restore := newRepo(t, be)
	cache := t.TempDir()
	cs := &countingSource{}
	opts := backup.Options{Paths: []string{filepath.Join(src, "shop")}, Excludes: backup.PrestaShopExcludes, CacheDir: cache, Source: cs}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.opens.Load(); got != int64(len(files)) {
		t.Fatalf("first backup opened %d files, want %d", got, len(files))
	}

	// The restore key reads back every file byte-identical; excluded cache is absent.
	rr, err := repo.Open(ctx, be, restore)
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if got := readFile(t, rr, res.Snapshot.Tree, p); !bytes.Equal(got, want) {
			t.Fatalf("%s: content differs (%d vs %d bytes)", p, len(got), len(want))
		}
	}
	if _, _, err := rr.FindNode(ctx, res.Snapshot.Tree, filepath.Join(src, "shop", "var", "cache")); err == nil {
		t.Fatal("var/cache was backed up despite the PrestaShop excludes")
	}
	link, _, err := rr.FindNode(ctx, res.Snapshot.Tree, filepath.Join(src, "shop", "link"))
	if err != nil || link.Type != repo.NodeSymlink || link.LinkTarget != "dira" {
		t.Fatalf("symlink: %+v %v", link, err)
	}
	if n, tr, err := rr.FindNode(ctx, res.Snapshot.Tree, filepath.Join(src, "shop", "empty")); err != nil || n.Type != repo.NodeDir || len(tr.Nodes) != 0 || n.Mode.Perm() != 0o700 {
		t.Fatalf("empty dir: %+v %v", n, err)
	}

	// Second backup, nothing changed: no file is read, nothing uploaded.
	r2, _ := repo.Open(ctx, be, host)
	_ = r2.LoadIndex(ctx)
	cs.opens.Store(0)
	res2, err := backup.Run(ctx, r2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.opens.Load(); got != 0 {
		t.Fatalf("unchanged backup opened %d files, want 0", got)
	}
	shopTree := func(sn *repo.Snapshot) repo.ID {
		n, _, err := rr.FindNode(ctx, sn.Tree, filepath.Join(src, "shop"))
		if err != nil {
			t.Fatal(err)
		}
		return *n.Subtree
	}
	_ = rr.LoadIndex(ctx)
	if shopTree(res2.Snapshot) != shopTree(res.Snapshot) {
		t.Fatal("unchanged tree got a different tree id")
	}
	// Only the trees of the temp directories above the source may change
	// (their mtimes move as other tests run).
	if res2.Snapshot.Stats.BlobsAdded > 5 {
		t.Fatalf("unchanged backup stored %d blobs", res2.Snapshot.Stats.BlobsAdded)
	}

	// Without the cache: everything is read again, nothing is uploaded.
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	r3, _ := repo.Open(ctx, be, host)
	_ = r3.LoadIndex(ctx)
	cs.opens.Store(0)
	res3, err := backup.Run(ctx, r3, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.opens.Load(); got != int64(len(files)) {
		t.Fatalf("backup without cache opened %d files, want %d", got, len(files))
	}
	_ = rr.LoadIndex(ctx)
	if res3.Snapshot.Stats.BlobsAdded > 5 || shopTree(res3.Snapshot) != shopTree(res.Snapshot) {
		t.Fatalf("backup without cache stored %d bytes", res3.Snapshot.Stats.StoredAdded)
	}

	// One changed file is the only one read.
	var changed string
	for p := range files {
		changed = p
		break
	}
	if err := os.WriteFile(changed, []byte("new content"), 0o640); err != nil {
		t.Fatal(err)
	}
	r4, _ := repo.Open(ctx, be, host)
	_ = r4.LoadIndex(ctx)
	cs.opens.Store(0)
	res4, err := backup.Run(ctx, r4, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.opens.Load(); got != 1 {
		t.Fatalf("after changing one file, %d files were read", got)
	}
	_ = rr.LoadIndex(ctx)
	if got := readFile(t, rr, res4.Snapshot.Tree, changed); string(got) != "new content" {
		t.Fatalf("changed file reads %q", got)
	}
	chk, err := rr.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || chk.Snapshots != 4 {
		t.Fatalf("check: %v %v snapshots=%d", err, chk.Problems, chk.Snapshots)
	}
}

func TestUnreadableFileGivesPartialSnapshot(t *testing.T) {
	ctx := t.Context()
	src := t.TempDir()
	files := writeTree(t, src)
	var deny string
	for p := range files {
		deny = p
		break
	}
	r, _, _ := newRepo(t, mem.New())
	_ = r.LoadIndex(ctx)
	res, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Source: &countingSource{deny: deny}})
	if !errors.Is(err, backup.ErrPartial) {
		t.Fatalf("got %v, want ErrPartial", err)
	}
	if res == nil || !res.Snapshot.Partial || len(res.Warnings) != 1 || !bytes.Contains([]byte(res.Warnings[0]), []byte(deny)) {
		t.Fatalf("result %+v does not name %s", res, deny)
	}
	sns, err := r.Snapshots(ctx)
	if err != nil || len(sns) != 1 {
		t.Fatalf("partial snapshot not saved: %v %d", err, len(sns))
	}
}

func TestMissingPathFailsWithoutSnapshot(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r, _, _ := newRepo(t, be)
	_, err := backup.Run(ctx, r, backup.Options{Paths: []string{"/does/not/exist"}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("/does/not/exist")) {
		t.Fatalf("got %v", err)
	}
	n := 0
	_ = be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { n++; return nil })
	if n != 0 {
		t.Fatal("a snapshot was written")
	}
}

func TestFullDiskLeavesNoSnapshotAndNextBackupWorks(t *testing.T) {
	ctx := t.Context()
	src := t.TempDir()
	writeTree(t, src)
	inner := mem.New()
	f := &backendtest.Faulty{Backend: inner}
	r, host, restore := newRepo(t, f)
	_ = r.LoadIndex(ctx)
	var saves atomic.Int32 // packs are uploaded concurrently
	f.FailSave = func(h backend.Handle) error {
		if h.Type == backend.PackFile {
			if saves.Add(1) > 1 {
				return backend.ErrNoSpace
			}
		}
		return nil
	}
	_, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}})
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("got %v, want ErrNoSpace", err)
	}
	n := 0
	_ = inner.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { n++; return nil })
	if n != 0 {
		t.Fatal("a failed backup wrote a snapshot")
	}
	f.FailSave = nil
	r2, _ := repo.Open(ctx, f, host)
	_ = r2.LoadIndex(ctx)
	if _, err := backup.Run(ctx, r2, backup.Options{Paths: []string{src}}); err != nil {
		t.Fatalf("backup after the disk was freed: %v", err)
	}
	rr, _ := repo.Open(ctx, inner, restore)
	chk, err := rr.Check(context.Background(), repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() {
		t.Fatalf("check: %v %v", err, chk.Problems)
	}
}

func TestSecondBackupOnSameCacheIsRefused(t *testing.T) {
	ctx := t.Context()
	src := t.TempDir()
	writeTree(t, src)
	r, _, _ := newRepo(t, mem.New())
	_ = r.LoadIndex(ctx)
	cache := t.TempDir()
	started := make(chan struct{})
	release := make(chan struct{})
	slow := &blockingSource{started: started, release: release}
	done := make(chan error, 1)
	go func() {
		_, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, CacheDir: cache, Source: slow})
		done <- err
	}()
	<-started
	_, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, CacheDir: cache})
	if !errors.Is(err, backup.ErrBusy) {
		t.Fatalf("second concurrent backup: got %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first backup: %v", err)
	}
	if _, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, CacheDir: cache}); err != nil {
		t.Fatalf("backup after the first finished: %v", err)
	}
}

// blockingSource holds the first Open until released.
type blockingSource struct {
	backup.OS
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (b *blockingSource) Open(p string) (io.ReadCloser, error) {
	b.once.Do(func() {
		close(b.started)
		<-b.release
	})
	return b.OS.Open(p)
}
