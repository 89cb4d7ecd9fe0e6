package restore_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// shop builds a small snapshot exercising every kind of entry and returns
// it with the expected content of its regular files.
type shop struct {
	fx      *fixture
	sn      *repo.Snapshot
	big     []byte // /var/www/shop/big.bin
	sparse  []byte // /var/www/shop/sparse.img
	linked  []byte // /var/www/shop/a.txt == b.txt
	conf    []byte // /etc/app.conf
	cfgFile []byte // /var/www/shop/config/parameters.php
}

const sparseHole = 4 << 20

func buildShop(t *testing.T) *shop {
	fx := newFixture(t)
	s := &shop{fx: fx}
	s.big = slices.Concat(randBytes(1, 300_000), randBytes(2, 300_000), randBytes(3, 450_000))
	s.sparse = slices.Concat(randBytes(4, 100_000), make([]byte, sparseHole), randBytes(5, 100_000))
	s.linked = []byte("hard linked content\n")
	s.conf = []byte("listen = 8080\n")
	s.cfgFile = []byte("<?php return ['database_host' => 'localhost'];\n")

	big := fx.file("big.bin", 0o644, s.big[:300_000], s.big[300_000:600_000], s.big[600_000:])
	sparse := fx.file("sparse.img", 0o600, s.sparse[:100_000], s.sparse[100_000:100_000+sparseHole], s.sparse[100_000+sparseHole:])
	a := fx.file("a.txt", 0o644, s.linked)
	a.Links, a.Inode, a.DeviceID = 2, 4242, 7
	b := a
	b.Name = "b.txt"
	empty := fx.file("empty.txt", 0o640)
	tagged := fx.file("tagged.txt", 0o644, []byte("xattr carrier\n"))
	tagged.Xattrs = []repo.Xattr{{Name: "user.shopvault.test", Value: []byte("hello")}}
	owned := fx.file("owned.txt", 0o640, []byte("owned by 1234\n"))
	owned.UID, owned.GID = 1234, 5678
	cfg := fx.file("parameters.php", 0o640, s.cfgFile)
	shopDir := fx.dir("shop", 0o755, big, sparse, a, b, empty, tagged, owned, fx.dir("config", 0o750, cfg))
	current := repo.Node{Name: "current", Type: repo.NodeSymlink, Mode: fs.ModeSymlink | 0o777, LinkTarget: "shop", ModTime: t0}
	abs := repo.Node{Name: "passwd-link", Type: repo.NodeSymlink, Mode: fs.ModeSymlink | 0o777, LinkTarget: "/etc/passwd", ModTime: t0}
	www := fx.dir("www", 0o755, shopDir, current, abs)
	logDir := fx.dir("log", 0o755, fx.file("shop.log", 0o644, []byte("log line\n")), fx.file("old.log.gz", 0o644, []byte("gz")))
	cache := fx.dir("cache", 0o755, fx.file("c.php", 0o644, []byte("<?php // cache")))
	emptyDir := fx.dir("empty", 0o700)
	fifo := repo.Node{Name: "app.fifo", Type: repo.NodeFifo, Mode: fs.ModeNamedPipe | 0o620, ModTime: t0}
	sock := repo.Node{Name: "app.sock", Type: repo.NodeSocket, Mode: fs.ModeSocket | 0o777, ModTime: t0}
	run := fx.dir("run", 0o755, fifo, sock)
	if os.Geteuid() == 0 { // only root can create (and so verify) device nodes
		null := repo.Node{Name: "null", Type: repo.NodeCharDev, Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Device: unix.Mkdev(1, 3), ModTime: t0}
		run = fx.dir("run", 0o755, fifo, sock, null)
	}
	tool := fx.file("tool", fs.ModeSetuid|fs.ModeSetgid|0o755, []byte("#!/bin/sh\necho tool\n"))
	sticky := fx.dir("tmpd", fs.ModeSticky|0o777)
	conf := fx.file("app.conf", 0o600, s.conf)
	root := fx.tree(
		fx.dir("etc", 0o755, conf),
		fx.dir("var", 0o755, www, logDir, cache, emptyDir),
		run,
		fx.dir("usr", 0o755, fx.dir("bin", 0o755, tool)),
		sticky,
	)
	s.sn = fx.snapshot(root)
	return s
}

func TestRoundTrip(t *testing.T) {
	s := buildShop(t)
	target := filepath.Join(t.TempDir(), "restore") // created by Restore
	prog := newRecorder()
	opts := restore.Options{Target: target, Owner: os.Geteuid() == 0, Progress: prog, Workers: 3}
	res, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := func(sp string) string { return filepath.Join(target, filepath.FromSlash(sp)) }

	// content
	equalBytes(t, p("var/www/shop/big.bin"), s.big)
	equalBytes(t, p("var/www/shop/sparse.img"), s.sparse)
	equalBytes(t, p("var/www/shop/a.txt"), s.linked)
	equalBytes(t, p("var/www/shop/b.txt"), s.linked)
	equalBytes(t, p("etc/app.conf"), s.conf)
	equalBytes(t, p("var/www/shop/empty.txt"), nil)

	// sparse: the 4 MiB zero blob was not written
	var st syscall.Stat_t
	if err := syscall.Stat(p("var/www/shop/sparse.img"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(s.sparse)) || st.Blocks*512 >= st.Size-sparseHole/2 {
		t.Fatalf("sparse.img: size %d, %d bytes allocated: the hole was written", st.Size, st.Blocks*512)
	}

	// hard links share an inode
	var sa, sb syscall.Stat_t
	_ = syscall.Stat(p("var/www/shop/a.txt"), &sa)
	_ = syscall.Stat(p("var/www/shop/b.txt"), &sb)
	if sa.Ino != sb.Ino || sa.Nlink != 2 {
		t.Fatalf("a.txt/b.txt: inodes %d/%d, links %d: not restored as hard links", sa.Ino, sb.Ino, sa.Nlink)
	}

	// symlinks are symlinks with their target, never followed
	for name, want := range map[string]string{"var/www/current": "shop", "var/www/passwd-link": "/etc/passwd"} {
		got, err := os.Readlink(p(name))
		if err != nil || got != want {
			t.Fatalf("%s: readlink %q %v, want %q", name, got, err, want)
		}
	}

	// modes incl. special bits
	for name, want := range map[string]fs.FileMode{
		"usr/bin/tool":                       fs.ModeSetuid | fs.ModeSetgid | 0o755,
		"tmpd":                               fs.ModeDir | fs.ModeSticky | 0o777,
		"etc/app.conf":                       0o600,
		"var/empty":                          fs.ModeDir | 0o700,
		"var/www/shop/config":                fs.ModeDir | 0o750,
		"var/www/shop/config/parameters.php": 0o640,
		"run/app.fifo":                       fs.ModeNamedPipe | 0o620,
	} {
		fi, err := os.Lstat(p(name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}

	// mtimes, to the nanosecond, for files, dirs and symlinks
	for _, name := range []string{"etc/app.conf", "var/www/shop/big.bin", "var/www/shop", "var", "var/www/current"} {
		fi, err := os.Lstat(p(name))
		if err != nil {
			t.Fatal(err)
		}
		n, _, err := s.fx.r.FindNode(t.Context(), s.sn.Tree, name)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(n.ModTime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), n.ModTime)
		}
	}

	// xattrs, where the filesystem has them
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(p("var/www/shop/tagged.txt"), "user.shopvault.test", buf); err == nil {
		if string(buf[:n]) != "hello" {
			t.Errorf("xattr: %q", buf[:n])
		}
	} else if err != unix.ENOTSUP {
		t.Errorf("xattr not restored: %v (warnings %v)", err, res.Warnings)
	}

	// owner, when root
	if os.Geteuid() == 0 {
		var so syscall.Stat_t
		_ = syscall.Stat(p("var/www/shop/owned.txt"), &so)
		if so.Uid != 1234 || so.Gid != 5678 {
			t.Errorf("owned.txt: owner %d:%d, want 1234:5678", so.Uid, so.Gid)
		}
	}

	// the socket is skipped with a warning
	if _, err := os.Lstat(p("run/app.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket restored: %v", err)
	}
	if !errors.Is(prog.errs["/run/app.sock"], restore.ErrWarning) || len(res.Warnings) == 0 {
		t.Errorf("no warning for the socket: %v %v", prog.errs, res.Warnings)
	}

	// a device node, when root
	root := os.Geteuid() == 0
	if root {
		var sd syscall.Stat_t
		if err := syscall.Lstat(p("run/null"), &sd); err != nil || sd.Mode&syscall.S_IFMT != syscall.S_IFCHR || sd.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device node: %v mode %o rdev %x", err, sd.Mode, sd.Rdev)
		}
	}

	// counts (12 regular files, one of them a second hard link)
	wantSpecials := int64(1)
	if root {
		wantSpecials = 2
	}
	if res.Files != 12 || res.Hardlinks != 1 || res.Symlinks != 2 || res.Specials != wantSpecials || res.Skipped != 0 || len(res.Damaged) != 0 {
		t.Errorf("result %+v", res)
	}
	if res.Dirs != 12 {
		t.Errorf("dirs %d, want 12", res.Dirs)
	}
	wantBytes := int64(len(s.big) + len(s.sparse) + len(s.linked) + len(s.conf) + len(s.cfgFile))
	if res.Bytes < wantBytes || res.Written >= res.Bytes-sparseHole+1 {
		t.Errorf("bytes %d written %d", res.Bytes, res.Written)
	}
	if prog.startCalls != 1 || int64(len(prog.done)) != prog.startedF-1 /* socket */ {
		t.Errorf("progress: start %d files, %d done, %d start calls", prog.startedF, len(prog.done), prog.startCalls)
	}

	// and Verify agrees
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() {
		t.Fatalf("verify after restore: %v", v.Problems)
	}
	if v.Bytes < int64(len(s.big)+len(s.sparse)) {
		t.Fatalf("verify hashed only %d bytes", v.Bytes)
	}
}

func TestIncludeExclude(t *testing.T) {
	s := buildShop(t)
	cases := []struct {
		name             string
		include, exclude []string
		want             []string // must exist
		absent           []string
	}{
		{"subtree", []string{"/var/www/shop/config"}, nil,
			[]string{"var", "var/www", "var/www/shop", "var/www/shop/config/parameters.php"},
			[]string{"etc", "var/log", "var/www/shop/big.bin", "var/www/current", "run"}},
		{"two includes", []string{"etc/", "/var/log"}, nil,
			[]string{"etc/app.conf", "var/log/shop.log"},
			[]string{"var/www", "usr"}},
		{"exclude glob", nil, []string{"*.log", "/var/cache", "sparse.*"},
			[]string{"var/log/old.log.gz", "var/www/shop/big.bin", "etc/app.conf"},
			[]string{"var/log/shop.log", "var/cache", "var/www/shop/sparse.img"}},
		{"one file", []string{"/etc/app.conf", "/var/www/shop/b.txt"}, nil,
			[]string{"etc/app.conf", "var/www/shop/b.txt"},
			[]string{"var/log", "var/www/shop/a.txt", "usr"}},
		{"include and exclude", []string{"/var/www"}, []string{"config"},
			[]string{"var/www/shop/a.txt"},
			[]string{"var/www/shop/config", "etc"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			opts := restore.Options{Target: target, Include: tc.include, Exclude: tc.exclude}
			if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if _, err := os.Lstat(filepath.Join(target, w)); err != nil {
					t.Errorf("missing %s: %v", w, err)
				}
			}
			for _, a := range tc.absent {
				if _, err := os.Lstat(filepath.Join(target, a)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s restored although not selected", a)
				}
			}
			v, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
			if err != nil || !v.OK() {
				t.Fatalf("verify: %v %v", err, v)
			}
		})
	}
	// a parent directory of an include gets its snapshot metadata
	target := t.TempDir()
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: target, Include: []string{"/var/www/shop/config"}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(target, "var/www")); fi == nil || !fi.ModTime().Equal(t0.Add(-3*time.Minute)) {
		t.Errorf("parent dir metadata not restored: %v", fi)
	}
	// bad selections are refused clearly
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: t.TempDir(), Include: []string{"/nope"}}); err == nil || !strings.Contains(err.Error(), "/nope") {
		t.Errorf("include of a missing path: %v", err)
	}
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: t.TempDir(), Exclude: []string{"[x"}}); err == nil || !strings.Contains(err.Error(), "[x") {
		t.Errorf("bad exclude pattern: %v", err)
	}
}

func TestNonEmptyTargetRefused(t *testing.T) {
	s := buildShop(t)
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: target})
	if !errors.Is(err, restore.ErrTargetNotEmpty) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("non-empty target: %v", err)
	}
	if got := listTree(t, target); !slices.Equal(got, []string{"keep.txt"}) {
		t.Fatalf("refused restore wrote %v", got)
	}
	// a file as target
	f := filepath.Join(target, "keep.txt")
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: f}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file as target: %v", err)
	}
	// with Overwrite, unrelated files stay
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, restore.Options{Target: target, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, f, []byte("mine"))
}

func TestResume(t *testing.T) {
	s := buildShop(t)
	target := t.TempDir()
	opts := restore.Options{Target: target, Owner: os.Geteuid() == 0}
	first, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	// damage one file in place (same size), delete another, and leave a
	// third as an interrupted restore would: right size, content missing
	big := filepath.Join(target, "var/www/shop/big.bin")
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'X'}, 450_000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Remove(filepath.Join(target, "etc/app.conf")); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(target, "var/www/shop/sparse.img")
	if err := os.Truncate(sparse, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, int64(len(s.sparse))); err != nil {
		t.Fatal(err)
	}
	// data inside the hole must be zeroed again
	writeAt(t, sparse, 100_000+1000, []byte("not zero"))
	before := statAll(t, target)

	// without Overwrite: refused
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts); !errors.Is(err, restore.ErrTargetNotEmpty) {
		t.Fatalf("rerun without overwrite: %v", err)
	}
	opts.Overwrite = true
	res, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 3 || res.Skipped != first.Files-3 {
		t.Fatalf("resume rewrote %d files, skipped %d (first run: %d files)", res.Files, res.Skipped, first.Files)
	}
	// big.bin: only the damaged blob (300 000 bytes) was fetched again;
	// sparse.img: its two data blobs, and the hole re-punched
	if want := int64(300_000 + 200_000 + len(s.conf)); res.Written != want {
		t.Errorf("resume wrote %d bytes, want %d", res.Written, want)
	}
	equalBytes(t, big, s.big)
	equalBytes(t, sparse, s.sparse)
	equalBytes(t, filepath.Join(target, "etc/app.conf"), s.conf)
	// untouched files kept their inode (not rewritten)
	after := statAll(t, target)
	for p, ino := range before {
		if strings.HasSuffix(p, "big.bin") || strings.HasSuffix(p, "sparse.img") {
			if after[p] != ino {
				t.Errorf("%s was replaced instead of repaired in place", p)
			}
			continue
		}
		if after[p] != ino {
			t.Errorf("%s was rewritten", p)
		}
	}
	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil || !v.OK() {
		t.Fatalf("verify after resume: %v %v", err, v.Problems)
	}
	// a third run finds everything in place
	res, err = restore.Restore(t.Context(), s.fx.r, s.sn, opts)
	if err != nil || res.Files != 0 || res.Written != 0 || res.Skipped != first.Files {
		t.Fatalf("third run: %+v %v", res, err)
	}
}

func writeAt(t *testing.T, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// statAll maps each regular file under dir to its inode.
func statAll(t *testing.T, dir string) map[string]uint64 {
	out := map[string]uint64{}
	for _, rel := range listTree(t, dir) {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, rel), &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
			out[rel] = st.Ino
		}
	}
	return out
}

func TestVerifyDetects(t *testing.T) {
	s := buildShop(t)
	target := t.TempDir()
	opts := restore.Options{Target: target}
	if _, err := restore.Restore(t.Context(), s.fx.r, s.sn, opts); err != nil {
		t.Fatal(err)
	}
	p := func(sp string) string { return filepath.Join(target, sp) }
	// keep the mtime while changing one byte, so only the content check can see it
	fi, _ := os.Stat(p("var/www/shop/big.bin"))
	writeAt(t, p("var/www/shop/big.bin"), 700_000, []byte{s.big[700_000] ^ 0xff})
	_ = os.Chtimes(p("var/www/shop/big.bin"), fi.ModTime(), fi.ModTime())
	if err := os.Chmod(p("etc/app.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("var/www/shop/config/parameters.php")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("var/www/current")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("elsewhere", p("var/www/current")); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(p("var/log/shop.log"), t0, t0.Add(time.Second))
	if err := os.Remove(p("var/www/shop/b.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("var/www/shop/b.txt"), s.linked, 0o644); err != nil {
		t.Fatal(err)
	}

	v, err := restore.Verify(t.Context(), s.fx.r, s.sn, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/var/www/shop/big.bin":               "content differs",
		"/etc/app.conf":                       "mode 0644",
		"/var/www/shop/config/parameters.php": "missing",
		"/var/www/current":                    "symlink points to \"elsewhere\"",
		"/var/log/shop.log":                   "mtime",
		"/var/www/shop/b.txt":                 "hard link",
	}
	got := map[string]string{}
	for _, pr := range v.Problems {
		got[pr.Path] += pr.What + "; "
	}
	for path, what := range want {
		if !strings.Contains(got[path], what) {
			t.Errorf("%s: problems %q, want one containing %q", path, got[path], what)
		}
		delete(got, path)
	}
	for path, what := range got {
		if path != "/var/www" && path != "/var/www/shop" && path != "/var/www/shop/config" { // directories whose entries changed
			t.Errorf("unexpected problem %s: %s", path, what)
		}
	}
	if v.OK() {
		t.Fatal("verify OK on a damaged tree")
	}
}

// Without root a device node is skipped with a warning, not an error.
func TestDeviceWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as non-root only (root can create device nodes)")
	}
	fx := newFixture(t)
	sn := fx.snapshot(fx.tree(repo.Node{Name: "null", Type: repo.NodeCharDev, Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Device: unix.Mkdev(1, 3), ModTime: t0}))
	prog := newRecorder()
	res, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: t.TempDir(), Progress: prog})
	if err != nil || len(res.Warnings) != 1 || !errors.Is(prog.errs["/null"], restore.ErrWarning) {
		t.Fatalf("device without root: %v %+v %v", err, res, prog.errs)
	}
}
