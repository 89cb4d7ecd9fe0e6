package restore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// damagedRepo stores 30 incompressible files of 150 kB (several per
// 1 MiB pack) and returns a repository view in which one byte in the
// middle of the pack holding /data/f10 is flipped on every read.
func damagedRepo(t *testing.T) (fx *fixture, sn *repo.Snapshot, bad repo.ID, view *repo.Repository) {
	fx = newFixture(t)
	var nodes []repo.Node
	for i := range 30 {
		name := fmt.Sprintf("f%02d", i)
		data := randBytes(int64(100+i), 150_000)
		fx.want["/data/"+name] = data
		nodes = append(nodes, fx.file(name, 0o644, data))
	}
	sn = fx.snapshot(fx.tree(fx.dir("data", 0o755, nodes...)))
	ie, ok := fx.r.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: nodes[10].Content[0]})
	if !ok {
		t.Fatal("blob of f10 not indexed")
	}
	bad = ie.Pack
	size := fx.r.Index().Packs()[bad]
	flip := size / 2
	faulty := &backendtest.Faulty{Backend: fx.be, Corrupt: func(h backend.Handle, off int64, b []byte) []byte {
		if h.Type == backend.PackFile && h.Name == bad.String() && flip >= off && flip < off+int64(len(b)) {
			b = append([]byte(nil), b...)
			b[flip-off] ^= 0x40
		}
		return b
	}}
	return fx, sn, bad, fx.open(faulty)
}

// filesInPack lists the snapshot files that have a blob in pack.
func filesInPack(t *testing.T, r *repo.Repository, sn *repo.Snapshot, pack repo.ID) map[string]bool {
	out := map[string]bool{}
	_, tree, err := r.FindNode(t.Context(), sn.Tree, "/data")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tree.Nodes {
		for _, id := range n.Content {
			if ie, _ := r.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: id}); ie.Pack == pack {
				out["/data/"+n.Name] = true
			}
		}
	}
	return out
}

func TestDamagedPackIgnoreErrors(t *testing.T) {
	fx, sn, bad, view := damagedRepo(t)
	inPack := filesInPack(t, fx.r, sn, bad)
	if len(inPack) < 3 {
		t.Fatalf("test setup: the damaged pack holds only %d files", len(inPack))
	}
	target := t.TempDir()
	prog := newRecorder()
	opts := restore.Options{Target: target, IgnoreErrors: true, Progress: prog, Workers: 2}
	res, err := restore.Restore(t.Context(), view, sn, opts)
	if err != nil {
		t.Fatalf("restore over a damaged pack with IgnoreErrors: %v", err)
	}
	if len(res.Damaged) == 0 {
		t.Fatalf("damaged: %v", res.Damaged)
	}
	t.Log(res.Damaged)
	damaged := map[string]bool{}
	for _, p := range res.Damaged {
		if !inPack[p] {
			t.Errorf("%s reported damaged but has no blob in the damaged pack", p)
		}
		if prog.errs[p] == nil || !strings.Contains(prog.errs[p].Error(), bad.Short()) {
			t.Errorf("progress error for %s does not name the pack: %v", p, prog.errs[p])
		}
		damaged[p] = true
	}
	if !damaged["/data/f10"] && len(res.Damaged) == 0 {
		t.Fatal("no damaged file reported")
	}
	// every file not reported damaged is exactly right, including those
	// in the damaged pack away from the flipped byte
	var restoredFromBadPack int
	for p, want := range fx.want {
		if damaged[p] {
			continue
		}
		equalBytes(t, filepath.Join(target, p), want)
		if inPack[p] {
			restoredFromBadPack++
		}
	}
	if restoredFromBadPack == 0 {
		t.Error("no file of the damaged pack was salvaged blob by blob")
	}
	if res.Files+int64(len(res.Damaged)) != 30 {
		t.Errorf("files %d + damaged %d != 30", res.Files, len(res.Damaged))
	}
	// Verify reports exactly the damaged files
	v, err := restore.Verify(t.Context(), view, sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, pr := range v.Problems {
		problems = append(problems, pr.Path)
	}
	if strings.Join(problems, ",") != strings.Join(res.Damaged, ",") {
		t.Errorf("verify problems %v, damaged %v", v.Problems, res.Damaged)
	}
}

func TestDamagedPackStops(t *testing.T) {
	_, sn, bad, view := damagedRepo(t)
	_, err := restore.Restore(t.Context(), view, sn, restore.Options{Target: t.TempDir()})
	if err == nil {
		t.Fatal("restore over a damaged pack succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, bad.Short()) || !strings.Contains(msg, "/data/f") || !strings.Contains(msg, "--ignore-errors") {
		t.Fatalf("error does not name the pack, a file and the way out: %v", err)
	}
	t.Log(err)
	var ce *repo.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error does not wrap the corruption: %v", err)
	}
}

func TestMissingPack(t *testing.T) {
	fx, sn, bad, _ := damagedRepo(t)
	if err := fx.be.Remove(t.Context(), backend.Handle{Type: backend.PackFile, Name: bad.String()}); err != nil {
		t.Fatal(err)
	}
	inPack := filesInPack(t, fx.r, sn, bad)
	res, err := restore.Restore(t.Context(), fx.open(fx.be), sn, restore.Options{Target: t.TempDir(), IgnoreErrors: true})
	if err != nil || len(res.Damaged) != len(inPack) {
		t.Fatalf("missing pack: %v, damaged %v, want %d files", err, res, len(inPack))
	}
}

// A full target filesystem gives a clear error naming the target.
func TestTargetFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=512k"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	fx, sn, _, _ := damagedRepo(t)
	target := filepath.Join(dir, "r")
	_, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: target})
	if !errors.Is(err, restore.ErrNoSpace) || !strings.Contains(err.Error(), target) {
		t.Fatalf("full target: %v", err)
	}
	t.Log(err)
}

// Restoring one file reads only its blobs, not whole packs.
func TestSparsePackRead(t *testing.T) {
	fx, sn, bad, _ := damagedRepo(t)
	var mu sync.Mutex
	var read int64
	counting := &backendtest.Faulty{Backend: fx.be, Corrupt: func(h backend.Handle, off int64, b []byte) []byte {
		if h.Type == backend.PackFile && h.Name == bad.String() {
			mu.Lock()
			read += int64(len(b))
			mu.Unlock()
		}
		return b
	}}
	view := fx.open(counting)
	// the last file with a blob in the pack
	var last string
	var lastOff uint32
	_, tree, _ := fx.r.FindNode(t.Context(), sn.Tree, "/data")
	for _, n := range tree.Nodes {
		ie, _ := fx.r.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: n.Content[0]})
		if ie.Pack == bad && ie.Offset >= lastOff {
			last, lastOff = "/data/"+n.Name, ie.Offset
		}
	}
	target := t.TempDir()
	if _, err := restore.Restore(t.Context(), view, sn, restore.Options{Target: target, Include: []string{last}}); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, filepath.Join(target, last), fx.want[last])
	size := fx.r.Index().Packs()[bad]
	if read == 0 || read > size/2 {
		t.Fatalf("restoring %s read %d bytes of its %d-byte pack", last, read, size)
	}
}
