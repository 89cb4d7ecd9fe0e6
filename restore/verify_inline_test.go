package restore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// A restore with Options.Verify checks the same entries as a separate
// Verify: same counts, and on a tree changed afterwards, the same problems.
func TestRestoreVerifyMatchesVerify(t *testing.T) {
	s := buildShop(t)
	target := t.TempDir()
	opts := restore.Options{Target: target, Verify: true, Workers: 3}
	res, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verify == nil || !res.Verify.OK() {
		t.Fatalf("verify of a fresh restore: %+v", res.Verify)
	}
	opts.Verify = false
	sep, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verify.Files != sep.Files || res.Verify.Dirs != sep.Dirs || res.Verify.Bytes != sep.Bytes {
		t.Fatalf("in-restore verify checked %d files, %d dirs, %d bytes; Verify %d, %d, %d",
			res.Verify.Files, res.Verify.Dirs, res.Verify.Bytes, sep.Files, sep.Dirs, sep.Bytes)
	}
	if res.Verify.Bytes < int64(len(s.big)) {
		t.Fatalf("no content re-hashed: %+v", res.Verify)
	}
	if res.VerifyDuration <= 0 || res.VerifyDuration > res.Duration {
		t.Errorf("verify duration %v of %v", res.VerifyDuration, res.Duration)
	}
}

// A blob whose stored bytes do not match its id (a buggy or hostile
// writer; age still authenticates it) is refused when unpacked without
// Verify, and with Verify (which skips that hash) it is caught by the
// re-read of what landed on disk: the file is reported, the rest is OK.
func TestRestoreVerifyCatchesLyingBlob(t *testing.T) {
	fx := newFixture(t)
	good := randBytes(7, 700_000) // spans several verify pieces
	bad := bytes.Clone(good)
	bad[650_000] ^= 1
	id := fx.r.BlobID(good)
	if _, err := fx.saver.SaveID(t.Context(), repo.BlobHandle{Type: repo.DataBlob, ID: id}, bad); err != nil {
		t.Fatal(err)
	}
	liar := repo.Node{Name: "liar.bin", Type: repo.NodeFile, Mode: 0o644, ModTime: t0, Size: uint64(len(good)), Content: []repo.ID{id}}
	honest := fx.file("honest.txt", 0o644, []byte("fine"))
	sn := fx.snapshot(fx.tree(liar, honest))

	if _, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "does not match its id") {
		t.Fatalf("restore without verify of a lying blob: %v", err)
	}

	target := t.TempDir()
	res, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: target, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range res.Verify.Problems {
		paths = append(paths, p.Path)
		if !strings.Contains(p.What, "content differs") || !strings.Contains(p.What, "bytes 0-") {
			t.Errorf("problem %s: %s", p.Path, p.What)
		}
	}
	if !reflect.DeepEqual(paths, []string{"/liar.bin"}) {
		t.Fatalf("problems %v, want /liar.bin only", res.Verify.Problems)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "honest.txt")); string(got) != "fine" {
		t.Fatalf("honest.txt = %q", got)
	}
}
