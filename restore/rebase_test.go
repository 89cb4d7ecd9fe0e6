package restore_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shopvault/shopvault/restore"
)

func TestRebase(t *testing.T) {
	s := buildShop(t)
	target := filepath.Join(t.TempDir(), "staging")
	opts := restore.Options{Target: target, Rebase: "/var/www/shop/", Owner: os.Geteuid() == 0}
	res, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the shop's contents, directly under the target.
	got := listTree(t, target)
	want := []string{"a.txt", "b.txt", "big.bin", "config", "config/parameters.php", "empty.txt", "owned.txt", "sparse.img", "tagged.txt"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("rebased restore wrote %q, want %q", got, want)
	}
	if res.Hardlinks != 1 || res.Dirs != 1 {
		t.Errorf("result %+v: want 1 hard link, 1 directory (config)", res)
	}
	equalBytes(t, filepath.Join(target, "big.bin"), s.big)
	equalBytes(t, filepath.Join(target, "config", "parameters.php"), s.cfgFile)

	// Verify with the same Rebase is clean, and it notices a change.
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Files != 8 {
		t.Fatalf("verify of the rebased restore: %d files, problems %v", v.Files, v.Problems)
	}
	if err := os.WriteFile(filepath.Join(target, "config", "parameters.php"), []byte("<?php return ['database_host' => 'staging'];\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	v, err = restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) == 0 {
		t.Fatal("verify did not notice a changed file")
	}
	for _, p := range v.Problems {
		if p.Path != "/var/www/shop/config/parameters.php" {
			t.Fatalf("verify after a change: %v", v.Problems)
		}
	}
	// Excluding the changed file makes it clean again.
	opts.Exclude = []string{"/var/www/shop/config/parameters.php"}
	if v, err = restore.Verify(t.Context(), s.fx.r, s.sn, opts); err != nil || !v.OK() {
		t.Fatalf("verify with the rewritten file excluded: %v %v", err, v)
	}

	// Include inside the rebase works; outside it, and a rebase that is
	// not a directory, are refused with a clear error.
	part := filepath.Join(t.TempDir(), "part")
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: part, Rebase: "/var/www/shop", Include: []string{"/var/www/shop/config"}}); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, part); !slices.Equal(got, []string{"config", "config/parameters.php"}) {
		t.Fatalf("rebase with include wrote %q", got)
	}
	for _, tc := range []struct {
		o    restore.Options
		want string
	}{
		{restore.Options{Rebase: "/var/www/shop", Include: []string{"/etc"}}, "outside /var/www/shop"},
		{restore.Options{Rebase: "/etc/app.conf"}, "not a directory"},
		{restore.Options{Rebase: "/var/www/nope"}, "/var/www/nope"},
	} {
		tc.o.Target = filepath.Join(t.TempDir(), "x")
		_, err := restore.Restore(t.Context(), s.fx.r, s.sn, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rebase %s include %v: err %v, want %q", tc.o.Rebase, tc.o.Include, err, tc.want)
		}
	}
}
