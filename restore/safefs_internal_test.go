package restore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// The root refuses every symlink in a path, with a cold directory cache
// and with one so small that every lookup evicts.
func TestRootRefusesSymlinks(t *testing.T) {
	for _, size := range []int{1024, 1} {
		t.Run(fmt.Sprintf("cache%d", size), func(t *testing.T) {
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
			rt.dirs = newDirCache(size)

			for _, rel := range []string{"abs/new", "rel/new", "real/up/abs/new", "abs/f", "file", "real/../abs/new", "./abs/new", "real//x"} {
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
	dir, _ := split(rel)
	_, release, err := rt.dir(dir)
	if err == nil {
		release()
	}
	return err
}

// A directory whose fd is cached is removed (Overwrite) and a symlink to
// outside the target put in its place: later lookups resolve the path
// again and refuse the symlink; nothing is written outside.
func TestDirCacheAfterRemove(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	target := filepath.Join(base, "target")
	for _, d := range []string{outside, filepath.Join(target, "a/b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := openRoot(target)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	create := func(rel string) error {
		fd, err := rt.open(rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	if err := create("a/b/one"); err != nil { // caches a and a/b
		t.Fatal(err)
	}
	if rt.dirs.get("a/b") == nil {
		t.Fatal("a/b is not cached: the test would prove nothing")
	}
	rt.dirs.release(rt.dirs.m["a/b"])

	// the restorer removes the directory a (as Overwrite does when the
	// snapshot has something else there), then a symlink appears there
	if err := rt.remove("a"); err != nil {
		t.Fatal(err)
	}
	if len(rt.dirs.m) != 0 {
		t.Fatalf("cached fds survived the removal of their directory: %v", rt.dirs.m)
	}
	if err := os.Symlink(outside, filepath.Join(target, "a")); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"a/two", "a/b/two"} {
		if err := create(rel); err == nil {
			t.Errorf("created %s through a symlink", rel)
		} else if rel == "a/two" && !errors.Is(err, unix.ELOOP) {
			t.Errorf("create %s: %v, want ELOOP", rel, err)
		}
	}

	// a symlink that replaced a cached directory behind the restorer's
	// back is never followed either: the fd still names the directory it
	// was opened on (now called moved), and removing the symlink drops it
	if err := os.Remove(filepath.Join(target, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(target, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := create("a/three"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(target, "a"), filepath.Join(target, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(target, "a")); err != nil {
		t.Fatal(err)
	}
	if err := create("a/four"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "moved/four")); err != nil {
		t.Fatalf("the cached fd did not name the directory it was opened on: %v", err)
	}
	if err := rt.remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(target, "a")); err != nil {
		t.Fatal(err)
	}
	if err := create("a/five"); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("create through a symlink after its removal: %v, want ELOOP", err)
	}
	if d, _ := os.ReadDir(outside); len(d) != 0 {
		t.Fatalf("something was written outside the target: %v", d)
	}
}

// Many goroutines resolve paths through a cache far smaller than the
// directories: every file lands where it should and no fd leaks.
func TestDirCacheConcurrent(t *testing.T) {
	target := t.TempDir()
	const dirs, files = 12, 20
	for i := range dirs {
		if err := os.MkdirAll(filepath.Join(target, fmt.Sprintf("d%d/e%d", i%3, i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fdsBefore := openFDs(t)
	rt, err := openRoot(target)
	if err != nil {
		t.Fatal(err)
	}
	rt.dirs = newDirCache(2)
	var wg sync.WaitGroup
	errs := make(chan error, dirs*files)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range dirs * files {
				if k%6 != w {
					continue
				}
				i, j := k%dirs, k/dirs
				rel := fmt.Sprintf("d%d/e%d/f%d", i%3, i, j)
				fd, err := rt.open(rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
				if err != nil {
					errs <- err
					continue
				}
				_, err = unix.Write(fd, []byte(rel))
				unix.Close(fd)
				if err != nil {
					errs <- err
				}
				if _, err := rt.lstat(rel); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(rt.dirs.m) > 2 {
		t.Errorf("cache holds %d directories, limit 2", len(rt.dirs.m))
	}
	if err := rt.close(); err != nil {
		t.Fatal(err)
	}
	for k := range dirs * files {
		i, j := k%dirs, k/dirs
		rel := fmt.Sprintf("d%d/e%d/f%d", i%3, i, j)
		b, err := os.ReadFile(filepath.Join(target, rel))
		if err != nil || string(b) != rel {
			t.Fatalf("%s: %q %v", rel, b, err)
		}
	}
	if after := openFDs(t); after != fdsBefore {
		t.Fatalf("%d fds open before, %d after: the cache leaks", fdsBefore, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open fds: %v", err)
	}
	return len(d)
}

// An fd dropped or evicted while in use stays open until its last
// release, then is closed.
func TestDirCacheCloseAtRelease(t *testing.T) {
	dir := t.TempDir()
	isOpen := func(fd int) bool {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		return err == nil
	}
	c := newDirCache(1)
	var fds []int
	for range 3 {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	a := c.put("a", fds[0])
	b := c.put("b", fds[1]) // over the limit, but a is in use
	if !isOpen(fds[0]) || len(c.m) != 2 {
		t.Fatal("an fd in use was evicted and closed")
	}
	c.release(a)
	if !isOpen(fds[0]) {
		t.Fatal("an idle cached fd was closed before eviction")
	}
	c.release(c.put("c", fds[2])) // evicts a (idle)
	if isOpen(fds[0]) || c.get("a") != nil {
		t.Fatal("the least recently used idle fd was not evicted")
	}
	c.drop("b", false) // b is cached, so it is dropped even without subtree
	if !isOpen(fds[1]) {
		t.Fatal("a dropped fd in use was closed")
	}
	c.release(b)
	if isOpen(fds[1]) {
		t.Fatal("a dropped fd was not closed at its last release")
	}
	c.closeAll()
	if isOpen(fds[2]) {
		t.Fatal("closeAll left an fd open")
	}
}
