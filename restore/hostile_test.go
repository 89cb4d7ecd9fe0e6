package restore_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// sandbox is a target next to a sentinel directory that nothing may touch.
type sandbox struct {
	base, target, sentinel, secret string
}

func newSandbox(t *testing.T) *sandbox {
	base := t.TempDir()
	sb := &sandbox{base: base, target: filepath.Join(base, "target"), sentinel: filepath.Join(base, "sentinel")}
	sb.secret = filepath.Join(sb.sentinel, "secret")
	if err := os.Mkdir(sb.sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sb.secret, []byte("original"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sb
}

// untouched fails unless the sentinel holds exactly its secret, unchanged,
// and nothing but target and sentinel exists in base.
func (sb *sandbox) untouched(t *testing.T) {
	t.Helper()
	if got := listTree(t, sb.sentinel); !slices.Equal(got, []string{"secret"}) {
		t.Fatalf("something was written outside the target: sentinel holds %v", got)
	}
	equalBytes(t, sb.secret, []byte("original"))
	var st syscall.Stat_t
	if err := syscall.Stat(sb.secret, &st); err != nil || st.Mode&0o7777 != 0o600 || st.Nlink != 1 {
		t.Fatalf("secret's mode or links changed: %o nlink %d", st.Mode&0o7777, st.Nlink)
	}
	d, _ := os.ReadDir(sb.base)
	for _, e := range d {
		if e.Name() != "target" && e.Name() != "sentinel" {
			t.Fatalf("something was written next to the target: %s", e.Name())
		}
	}
}

func nodeJSON(name, typ string, extra string) string {
	return fmt.Sprintf(`{"name":%q,"type":%q,"mode":420,"uid":0,"gid":0,"mtime":"2024-01-01T00:00:00Z"%s}`, name, typ, extra)
}

func TestHostileTrees(t *testing.T) {
	for _, tc := range []struct {
		name string
		// build returns the root tree; sb gives the sentinel path for symlinks
		build   func(fx *fixture, sb *sandbox) repo.ID
		wantErr string // "" = restore succeeds
		include []string
		check   func(t *testing.T, sb *sandbox)
	}{
		{name: "dotdot name", wantErr: "invalid file name", build: func(fx *fixture, sb *sandbox) repo.ID {
			id := fx.file("x", 0o644, []byte("pwned")).Content[0]
			return fx.rawTree(`{"nodes":[` + nodeJSON("..", "file", `,"size":5,"content":["`+id.String()+`"]`) + `]}`)
		}},
		{name: "slash name", wantErr: "invalid file name", build: func(fx *fixture, sb *sandbox) repo.ID {
			id := fx.file("x", 0o644, []byte("pwned")).Content[0]
			return fx.rawTree(`{"nodes":[` + nodeJSON("../sentinel/secret", "file", `,"size":5,"content":["`+id.String()+`"]`) + `]}`)
		}},
		{name: "absolute name deep in the tree", wantErr: "invalid file name", build: func(fx *fixture, sb *sandbox) repo.ID {
			id := fx.file("x", 0o644, []byte("pwned")).Content[0]
			bad := fx.rawTree(`{"nodes":[` + nodeJSON(sb.secret, "file", `,"size":5,"content":["`+id.String()+`"]`) + `]}`)
			return fx.tree(fx.dir("a", 0o755, fx.dir("b", 0o755)), repo.Node{Name: "c", Type: repo.NodeDir, Mode: fs.ModeDir | 0o755, Subtree: &bad})
		}},
		{name: "symlink then a directory of the same name", wantErr: "not sorted or duplicated", build: func(fx *fixture, sb *sandbox) repo.ID {
			inner := fx.tree(fx.file("secret", 0o644, []byte("pwned")))
			return fx.rawTree(`{"nodes":[` + nodeJSON("evil", "symlink", `,"linktarget":"`+sb.sentinel+`"`) + `,` +
				nodeJSON("evil", "dir", `,"subtree":"`+inner.String()+`"`) + `]}`)
		}},
		{name: "include through a symlink", include: []string{"/evil/secret"}, wantErr: "not a directory", build: func(fx *fixture, sb *sandbox) repo.ID {
			return fx.tree(repo.Node{Name: "evil", Type: repo.NodeSymlink, LinkTarget: sb.sentinel, Mode: fs.ModeSymlink | 0o777})
		}},
		{name: "hardlink group with a symlink leader", build: func(fx *fixture, sb *sandbox) repo.ID {
			evil := repo.Node{Name: "a-evil", Type: repo.NodeSymlink, LinkTarget: sb.secret, Mode: fs.ModeSymlink | 0o777, Inode: 77, DeviceID: 1, Links: 2}
			f := fx.file("b-file", 0o666, []byte("pwned"))
			f.Inode, f.DeviceID, f.Links = 77, 1, 2
			return fx.tree(evil, f)
		}, check: func(t *testing.T, sb *sandbox) {
			fi, err := os.Lstat(filepath.Join(sb.target, "b-file"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("b-file: %v %v", fi, err)
			}
			equalBytes(t, filepath.Join(sb.target, "b-file"), []byte("pwned"))
		}},
		{name: "hardlink group with different contents", build: func(fx *fixture, sb *sandbox) repo.ID {
			a := fx.file("a", 0o644, []byte("first"))
			b := fx.file("b", 0o644, []byte("second"))
			for _, n := range []*repo.Node{&a, &b} {
				n.Inode, n.DeviceID, n.Links = 5, 1, 2
			}
			return fx.tree(a, b)
		}, check: func(t *testing.T, sb *sandbox) {
			equalBytes(t, filepath.Join(sb.target, "a"), []byte("first"))
			equalBytes(t, filepath.Join(sb.target, "b"), []byte("second"))
		}},
		{name: "absolute symlinks are created, never followed", build: func(fx *fixture, sb *sandbox) repo.ID {
			// a symlink to the sentinel directory and one to the secret,
			// then files sorting after them in the same directory
			return fx.tree(
				repo.Node{Name: "a", Type: repo.NodeSymlink, LinkTarget: sb.sentinel, Mode: fs.ModeSymlink | 0o777},
				repo.Node{Name: "b", Type: repo.NodeSymlink, LinkTarget: sb.secret, Mode: fs.ModeSymlink | 0o777},
				fx.file("c", 0o644, []byte("ok")))
		}, check: func(t *testing.T, sb *sandbox) {
			if l, err := os.Readlink(filepath.Join(sb.target, "b")); err != nil || l != sb.secret {
				t.Fatalf("symlink b: %q %v", l, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			sb := newSandbox(t)
			sn := fx.snapshot(tc.build(fx, sb))
			_, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: sb.target, Include: tc.include, Owner: os.Geteuid() == 0})
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
			sb.untouched(t)
			if tc.check != nil {
				tc.check(t, sb)
			}
			// and with Overwrite over what the first attempt left
			_, err = restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: sb.target, Include: tc.include, Overwrite: true})
			if (err == nil) != (tc.wantErr == "") {
				t.Fatalf("second run: %v", err)
			}
			sb.untouched(t)
		})
	}
}

// A target that already holds symlinks (and a hard link) pointing outside:
// Overwrite replaces them and writes nothing outside.
func TestOverwriteDoesNotFollow(t *testing.T) {
	s := buildShop(t)
	sb := newSandbox(t)
	if err := os.MkdirAll(filepath.Join(sb.target, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{
		"var":          sb.sentinel, // a directory of the snapshot
		"usr/bin":      sb.sentinel,
		"tmpd":         sb.sentinel,
		"etc":          sb.sentinel,
		"run":          "../sentinel",
		"target-alias": ".",
	} {
		if err := os.Symlink(to, filepath.Join(sb.target, link)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: sb.target, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	sb.untouched(t)
	for _, d := range []string{"var", "usr/bin", "tmpd", "etc", "run"} {
		fi, err := os.Lstat(filepath.Join(sb.target, d))
		if err != nil || !fi.IsDir() {
			t.Fatalf("%s: not replaced by a directory: %v %v", d, fi, err)
		}
	}
	equalBytes(t, filepath.Join(sb.target, "etc/app.conf"), s.conf)
	if res.Skipped != 0 {
		t.Fatalf("skipped %d files that did not exist", res.Skipped)
	}

	// a file in the target hard-linked to the secret, with the same size
	// as the snapshot's file: it must be replaced, not written into
	conf := filepath.Join(sb.target, "etc/app.conf")
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sb.secret, []byte("orig"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(sb.secret, conf); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sb.secret, int64(len(s.conf))); err != nil {
		t.Fatal(err)
	}
	// and a symlink at a file path
	big := filepath.Join(sb.target, "var/www/shop/big.bin")
	_ = os.Remove(big)
	if err := os.Symlink(sb.secret, big); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: sb.target, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	want := append([]byte("orig"), make([]byte, len(s.conf)-4)...)
	equalBytes(t, sb.secret, want)
	equalBytes(t, conf, s.conf)
	equalBytes(t, big, s.big)
	if fi, _ := os.Lstat(big); !fi.Mode().IsRegular() {
		t.Fatalf("big.bin is still a symlink")
	}
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, restore.Options{Target: sb.target})
	if err != nil || !v.OK() {
		t.Fatalf("verify: %v %v", err, v.Problems)
	}
}

func TestVerifyDoesNotFollowSymlinks(t *testing.T) {
	s := buildShop(t)
	sb := newSandbox(t)
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: sb.target}); err != nil {
		t.Fatal(err)
	}
	// replace /etc by a symlink to a directory holding an identical app.conf
	if err := os.WriteFile(filepath.Join(sb.sentinel, "app.conf"), s.conf, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(sb.target, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sb.sentinel, filepath.Join(sb.target, "etc")); err != nil {
		t.Fatal(err)
	}
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, restore.Options{Target: sb.target})
	if err != nil {
		t.Fatal(err)
	}
	var sawDir, sawFile bool
	for _, p := range v.Problems {
		sawDir = sawDir || p.Path == "/etc" && strings.Contains(p.What, "symlink")
		sawFile = sawFile || p.Path == "/etc/app.conf"
	}
	if !sawDir || !sawFile {
		t.Fatalf("verify followed a symlink inside the target: %v", v.Problems)
	}
}

// Overwrite replaces entries of the wrong type: a fifo or a directory
// where the snapshot has a file, a file where it has a directory.
func TestOverwriteReplacesWrongTypes(t *testing.T) {
	s := buildShop(t)
	target := t.TempDir()
	p := func(sp string) string { return filepath.Join(target, sp) }
	if err := os.MkdirAll(p("etc/app.conf/sub"), 0o755); err != nil { // dir at a file path
		t.Fatal(err)
	}
	if err := os.WriteFile(p("etc/app.conf/sub/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p("var/www/shop"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p("var/www/shop/big.bin"), 0o644); err != nil { // fifo at a file path
		t.Fatal(err)
	}
	if err := os.WriteFile(p("usr"), []byte("file at a dir path"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: target, Overwrite: true, Owner: os.Geteuid() == 0}); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, p("etc/app.conf"), s.conf)
	equalBytes(t, p("var/www/shop/big.bin"), s.big)
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, restore.Options{Target: target, Owner: os.Geteuid() == 0})
	if err != nil || !v.OK() {
		t.Fatalf("verify: %v %v", err, v.Problems)
	}
}
