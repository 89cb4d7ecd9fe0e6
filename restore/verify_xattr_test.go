package restore_test

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// Verify reads the xattrs of entries it has no content to read for: an
// empty file and a directory.
func TestVerifyXattrsWithoutContent(t *testing.T) {
	fx := newFixture(t)
	x := []repo.Xattr{{Name: "user.shopvault.test", Value: []byte("v")}}
	empty := fx.file("empty", 0o644)
	empty.Xattrs = x
	dir := fx.dir("d", 0o755, fx.file("f", 0o644, []byte("f")))
	dir.Xattrs = x
	sn := fx.snapshot(fx.tree(empty, dir))
	target := t.TempDir()
	res, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Skipf("the filesystem of %s does not take user xattrs: %v", target, res.Warnings)
	}
	v, err := restore.Verify(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil || !v.OK() {
		t.Fatalf("verify of a fresh restore: %v %v", err, v.Problems)
	}
	for _, p := range []string{"empty", "d"} {
		if err := unix.Removexattr(filepath.Join(target, p), "user.shopvault.test"); err != nil {
			t.Fatal(err)
		}
	}
	v, err = restore.Verify(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, pr := range v.Problems {
		got[pr.Path] += pr.What
	}
	for _, p := range []string{"/empty", "/d"} {
		if !strings.Contains(got[p], "extended attribute user.shopvault.test is missing") {
			t.Errorf("%s: problems %q, want the missing xattr", p, got[p])
		}
	}
}
