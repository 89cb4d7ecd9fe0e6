package restore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The root refuses every symlink in a path, in the openat2 mode and in the
// component-walk fallback for old kernels.
func TestRootRefusesSymlinks(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "fallback"
		}
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			target := filepath.Join(base, "target")
			for _, d := range []string{outside, filepath.Join(target, "real")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			for link, to := range map[string]string{"abs": outside, "rel": "../outside", "real/up": "..", "file": filepath.Join(outside, "f")} {
				if err := os.Symlink(to, filepath.Join(target, link)); err != nil {
					t.Fatal(err)
				}
			}
			rt, err := openRoot(target)
			if err != nil {
				t.Fatal(err)
			}
			defer rt.close()
			rt.noOpenat2 = rt.noOpenat2 || fallback

			for _, rel := range []string{"abs/new", "rel/new", "real/up/abs/new", "abs/f", "file"} {
				fd, err := rt.open(rel, unix.O_WRONLY|unix.O_CREAT, 0o644)
				if err == nil {
					unix.Close(fd)
					t.Errorf("open %s for writing followed a symlink", rel)
					continue
				}
				if msg := rt.pathErr("create", rel, err).Error(); !strings.Contains(msg, "symlink") || !strings.Contains(msg, target) {
					t.Errorf("error for %s does not explain: %s", rel, msg)
				}
				if strings.Contains(rel, "/") && rt.parentOnly(rel) == nil {
					t.Errorf("parent of %s resolved through a symlink", rel)
				}
			}
			if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("a file was created outside the target")
			}
			// a link through a symlinked parent is refused too
			if err := rt.link("real", "abs/linked"); err == nil {
				t.Error("link through a symlink succeeded")
			}
			// normal paths work; lstat sees the symlink itself
			fd, err := rt.open("real/ok", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
			st, err := rt.lstat("abs")
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Fatalf("lstat of a symlink: %v %o", err, st.Mode)
			}
			// remove deletes the symlink, not what it points to
			if err := rt.remove("abs"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(outside, "f")); err != nil {
				t.Fatal("remove followed the symlink")
			}
			// remove of a directory with contents (and a symlink inside)
			if err := rt.remove("real"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(outside); err != nil {
				t.Fatal("removing a tree followed a symlink out of it")
			}
		})
	}
}

func (rt *root) parentOnly(rel string) error {
	fd, _, err := rt.parent(rel)
	if err == nil {
		unix.Close(fd)
	}
	return err
}
