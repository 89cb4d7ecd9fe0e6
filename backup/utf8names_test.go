package backup_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// TestNamesNotUTF8SurviveBackupAndRestore backs up a shop directory whose
// names are not UTF-8 (Latin-1 uploads from old Windows and FTP clients,
// and two names that differ only in such a byte), restores it with the
// real restore package, and compares every name, link target and content
// byte for byte. Tree blobs are JSON, which cannot hold such bytes as
// they are; they must not come back as U+FFFD, and a directory must not
// become unreadable because two names map to the same replacement.
func TestNamesNotUTF8SurviveBackupAndRestore(t *testing.T) {
	ctx := t.Context()
	shop := filepath.Join(t.TempDir(), "shop")
	files := map[string][]byte{ // relative path -> content
		"caf\xe9.jpg":       []byte("latin-1 jpeg bytes"),
		"a\xfe":             []byte("first"),
		"a\xff":             []byte("second"),
		"d\xe8s/prix\xa0ht": []byte("a file inside a latin-1 directory"),
		"plain.txt":         []byte("ascii"),
		"\xc3(\ufffd":       []byte("bad utf-8 next to a real U+FFFD"),
	}
	links := map[string]string{ // relative path -> target
		"d\xe8s/photo": "../caf\xe9.jpg",
		"latest":       "d\xe8s/prix\xa0ht",
	}
	if err := os.MkdirAll(filepath.Join(shop, "d\xe8s"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(shop, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(shop, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(shop, "plain.txt"), "user.note\xe9", []byte("x"), 0); err != nil {
		t.Logf("no user xattrs here (%v): xattr names are covered by repo's tests only", err)
	}

	be := mem.New()
	r, host, restoreKey := newRepo(t, be)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	cs := &countingSource{}
	opts := backup.Options{Paths: []string{shop}, CacheDir: t.TempDir(), Source: cs}
	res, err := backup.Run(ctx, r, opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}

	rr, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	rr.TempDir = t.TempDir()
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	o := restore.Options{Target: target, Rebase: shop}
	if _, err := restore.Restore(ctx, rr, res.Snapshot, o); err != nil {
		t.Fatalf("restore: %v", err)
	}

	// The restored tree holds exactly the original names, read with raw bytes.
	if got, want := walkNames(t, target), walkNames(t, shop); !slices.Equal(got, want) {
		t.Fatalf("restored names\n%q\nwant\n%q", got, want)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %q, %v; want %q", p, got, err, want)
		}
	}
	for p, want := range links {
		got, err := os.Readlink(filepath.Join(target, p))
		if err != nil || got != want {
			t.Errorf("link %q points to %q (%v), want %q", p, got, err, want)
		}
	}
	if x, err := getxattr(filepath.Join(shop, "plain.txt"), "user.note\xe9"); err == nil {
		if got, err := getxattr(filepath.Join(target, "plain.txt"), "user.note\xe9"); err != nil || !bytes.Equal(got, x) {
			t.Errorf("xattr user.note\\xe9: %q, %v; want %q", got, err, x)
		}
	}

	v, err := restore.Verify(ctx, rr, res.Snapshot, o)
	if err != nil || !v.OK() {
		t.Fatalf("verify: %v %v", err, v)
	}
	if v.Files != int64(len(files)+len(links)) || v.Dirs != 1 {
		t.Fatalf("verify checked %d entries and %d directories, want %d and 1", v.Files, v.Dirs, len(files)+len(links))
	}
	// Verify looks at the raw names too: a missing one is a problem.
	if err := os.Remove(filepath.Join(target, "a\xfe")); err != nil {
		t.Fatal(err)
	}
	v, err = restore.Verify(ctx, rr, res.Snapshot, o)
	if err != nil || len(v.Problems) != 1 || !strings.Contains(v.Problems[0].Path, "a\xfe") {
		t.Fatalf("verify after removing a\\xfe: %v %v", err, v.Problems)
	}

	// A second backup reads nothing (the change cache knows the raw names)
	// and re-encodes every directory to the same tree blob.
	r2, err := repo.Open(ctx, be, host)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	cs.opens.Store(0)
	res2, err := backup.Run(ctx, r2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := cs.opens.Load(); n != 0 {
		t.Fatalf("unchanged second backup read %d files", n)
	}
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	shopTree := func(sn *repo.Snapshot) repo.ID {
		t.Helper()
		n, _, err := rr.FindNode(ctx, sn.Tree, shop)
		if err != nil {
			t.Fatal(err)
		}
		return *n.Subtree
	}
	if shopTree(res2.Snapshot) != shopTree(res.Snapshot) {
		t.Fatal("unchanged directory with non-UTF-8 names got a new tree blob")
	}
}

// walkNames lists every path under root, relative, with a type marker.
func walkNames(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, rel+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}

func getxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
