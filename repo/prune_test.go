package repo_test

import (
	"bytes"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/repo"
)

// snapshotOf stores blobs and a snapshot whose refs are exactly those blobs.
func snapshotOf(t *testing.T, r *repo.Repository, blobs [][]byte) *repo.Snapshot {
	t.Helper()
	ids := saveSome(t, r, blobs)
	var refs []repo.BlobHandle
	for _, id := range ids {
		refs = append(refs, repo.BlobHandle{Type: repo.DataBlob, ID: id})
	}
	// a tree so check finds the root in the refs
	tree, _ := repo.EncodeTree(&repo.Tree{})
	s := r.NewBlobSaver(t.Context(), 1)
	tid, _, err := s.Save(t.Context(), repo.TreeBlob, tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(t.Context()); err != nil {
		t.Fatal(err)
	}
	refs = append(refs, repo.BlobHandle{Type: repo.TreeBlob, ID: tid})
	refsID, err := r.SaveRefs(t.Context(), refs, repo.ID{})
	if err != nil {
		t.Fatal(err)
	}
	sn := &repo.Snapshot{Tree: tid, Refs: refsID}
	if _, err := r.SaveSnapshot(t.Context(), sn); err != nil {
		t.Fatal(err)
	}
	return sn
}

func storedBytes(t *testing.T, be backend.Backend) int64 {
	var n int64
	_ = be.List(t.Context(), backend.PackFile, func(fi backend.FileInfo) error { n += fi.Size; return nil })
	return n
}

func TestPruneWithHostKeyAndRepack(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	hostKey, restoreKey := initRepo(t, be)
	hr, _ := repo.Open(ctx, be, hostKey)
	var old, shared, fresh [][]byte
	for i := 0; i < 20; i++ {
		old = append(old, randBytes(int64(100+i), 100_000))
		shared = append(shared, randBytes(int64(200+i), 100_000))
		fresh = append(fresh, randBytes(int64(300+i), 100_000))
	}
	snOld := snapshotOf(t, hr, append(append([][]byte{}, old...), shared...))
	snNew := snapshotOf(t, hr, append(append([][]byte{}, shared...), fresh...))
	before := storedBytes(t, be)
	if err := hr.RemoveSnapshot(ctx, snOld); err != nil {
		t.Fatal(err)
	}
	res, err := hr.Prune(ctx, repo.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := storedBytes(t, be)
	if res.PacksDeleted == 0 || after >= before {
		t.Fatalf("host-key prune deleted %d packs, %d -> %d bytes", res.PacksDeleted, before, after)
	}
	rr, _ := repo.Open(ctx, be, restoreKey)
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	chk, err := rr.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() {
		t.Fatalf("check after prune: %v %v", err, chk.Problems)
	}
	for i, b := range append(append([][]byte{}, shared...), fresh...) {
		got, err := rr.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: rr.BlobID(b)}, nil)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d of the kept snapshot: %v", i, err)
		}
	}
	// Repack needs the restore key; with it, partly used packs shrink.
	if _, err := hr.Prune(ctx, repo.PruneOptions{Repack: true}); err == nil {
		t.Fatal("repack with the host key succeeded")
	}
	_ = snNew
	res, err = rr.Prune(ctx, repo.PruneOptions{Repack: true})
	if err != nil {
		t.Fatal(err)
	}
	rr2, _ := repo.Open(ctx, be, restoreKey)
	_ = rr2.LoadIndex(ctx)
	chk, err = rr2.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || len(chk.Unreferenced) != 0 {
		t.Fatalf("check after repack: %v %v unreferenced=%d", err, chk.Problems, len(chk.Unreferenced))
	}
	if chk.Blobs != len(shared)+len(fresh)+1 {
		t.Fatalf("after repack the index holds %d blobs, want %d (unused ones dropped)", chk.Blobs, len(shared)+len(fresh)+1)
	}
}

func TestPrefetchTreesServesTreesWithoutStorage(t *testing.T) {
	ctx := t.Context()
	inner := mem.New()
	_, restoreKey := initRepo(t, inner)
	f := &backendtest.Faulty{Backend: inner}
	r, _ := repo.Open(ctx, f, restoreKey)
	sn := snapshotOf(t, r, [][]byte{randBytes(9, 5000)})
	n, err := r.PrefetchTrees(ctx, sn, repo.DefaultTreeBudget)
	if err != nil || n != 1 {
		t.Fatalf("prefetch: %d trees, %v", n, err)
	}
	f.FailLoad = func(h backend.Handle) error {
		if h.Type == backend.PackFile {
			return backendtest.ErrInjected
		}
		return nil
	}
	if _, err := r.LoadTree(ctx, sn.Tree); err != nil {
		t.Fatalf("a prefetched tree needed storage: %v", err)
	}
	if _, err := r.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: r.BlobID(randBytes(9, 5000))}, nil); err == nil {
		t.Fatal("the fault injection did not apply to data blobs")
	}
}

// A pack one eighth unused is repacked by default (DefaultRepackThreshold)
// but not at the old default of 0.2.
func TestRepackDefaultThreshold(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	_, restoreKey := initRepo(t, be)
	r, _ := repo.Open(ctx, be, restoreKey)
	var blobs [][]byte
	for i := 0; i < 8; i++ {
		blobs = append(blobs, randBytes(int64(400+i), 100_000)) // one pack of 1 MiB
	}
	snAll := snapshotOf(t, r, blobs)
	snapshotOf(t, r, blobs[1:])
	if err := r.RemoveSnapshot(ctx, snAll); err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(ctx, repo.PruneOptions{Repack: true, RepackThreshold: 0.2, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksRepacked != 0 {
		t.Fatalf("at 0.2, %d packs to repack, want 0 (12.5%% unused)", res.PacksRepacked)
	}
	res, err = r.Prune(ctx, repo.PruneOptions{Repack: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksRepacked != 1 || res.UnusedKept != 0 {
		t.Fatalf("by default %d packs repacked, %d unused bytes kept; want 1 and 0", res.PacksRepacked, res.UnusedKept)
	}
	chk, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || chk.Blobs != len(blobs)-1+1 {
		t.Fatalf("check after repack: %v %v, %d blobs (want %d)", err, chk.Problems, chk.Blobs, len(blobs))
	}
}
