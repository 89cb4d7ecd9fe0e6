package restore

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// root is the restore target, opened once. Every path the restorer touches
// is a slash-separated path relative to it, made of names validated with
// repo.ValidName (and checked again here), and it is resolved one
// component at a time: each directory is opened relative to its parent's
// fd with O_PATH|O_DIRECTORY|O_NOFOLLOW, and the last component is used
// with O_NOFOLLOW or an *at call that does not follow it
// (AT_SYMLINK_NOFOLLOW, unlinkat, mkdirat, symlinkat, ...). A single name
// relative to a directory fd cannot leave that directory, and a symlink in
// any component fails the lookup, so no symlink is ever traversed and
// nothing outside the target is touched.
//
// Directory fds are cached (dirCache), so a file costs one single-component
// lookup instead of a walk of its whole path from the target root. A cached
// fd keeps pointing at the directory it was opened on: when the restorer
// removes a directory (Overwrite), every cached fd at or below it is
// dropped, so a later lookup resolves the path again and refuses whatever
// now stands there. A directory that someone else renames or replaces
// while the restore runs is not noticed (the same holds for an open file);
// the directories a restore creates are 0700 until the end, so only their
// owner can do that.
type root struct {
	fd   int
	path string
	dirs *dirCache
}

// openRoot opens dir (which must exist and be a directory).
func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open restore target %s: %w", dir, err)
	}
	return &root{fd: fd, path: dir, dirs: newDirCache(dirCacheSize())}, nil
}

func (rt *root) close() error {
	rt.dirs.closeAll()
	return unix.Close(rt.fd)
}

// dirCacheSize bounds the cached directory fds by a quarter of the open
// file limit (Go raises the soft limit to the hard one at start-up), so
// that the files the workers keep open always fit.
func dirCacheSize() int {
	var rl unix.Rlimit
	n := 1024
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur/4 < uint64(n) {
		n = int(rl.Cur / 4)
	}
	return max(n, 8)
}

// full returns the absolute path of rel, for messages.
func (rt *root) full(rel string) string {
	if rel == "." || rel == "" {
		return rt.path
	}
	return strings.TrimSuffix(rt.path, "/") + "/" + rel
}

// pathErr describes a failed operation on rel, and names a refused symlink.
func (rt *root) pathErr(op, rel string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s %s: a component of the path is a symlink or leaves the target; refusing to follow it: %w", op, rt.full(rel), err)
	}
	if isNoSpace(err) {
		return fmt.Errorf("%s %s: %w (the filesystem of the restore target %s is full: free space or choose another --target): %w", op, rt.full(rel), ErrNoSpace, rt.path, err)
	}
	return fmt.Errorf("%s %s: %w", op, rt.full(rel), err)
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// component checks that name is a single path component that stays in
// its directory.
func component(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return unix.EXDEV
	}
	return nil
}

// split returns rel's parent directory ("." at the top) and last component.
func split(rel string) (string, string) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, name
}

// dir returns an O_PATH fd of the directory rel ("." for the root),
// resolved component by component without following symlinks. The fd is
// borrowed: call release when done with it, and never close it.
func (rt *root) dir(rel string) (fd int, release func(), err error) {
	if rel == "." || rel == "" {
		return rt.fd, func() {}, nil
	}
	if d := rt.dirs.get(rel); d != nil {
		return d.fd, func() { rt.dirs.release(d) }, nil
	}
	parent, name := split(rel)
	if err := component(name); err != nil {
		return -1, nil, err
	}
	pfd, prelease, err := rt.dir(parent)
	if err != nil {
		return -1, nil, err
	}
	fd, err = openDir(pfd, name)
	prelease()
	if err != nil {
		return -1, nil, err
	}
	d := rt.dirs.put(rel, fd)
	return d.fd, func() { rt.dirs.release(d) }, nil
}

// openDir opens the directory name in pfd with O_PATH, refusing a symlink
// (ELOOP) or anything else that is not a directory (ENOTDIR).
func openDir(pfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(pfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOTDIR {
			// O_DIRECTORY refuses a symlink with ENOTDIR: say which it was
			var st unix.Stat_t
			if unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		return fd, err
	}
}

// at runs fn with rel's parent directory fd and last component. The fd is
// borrowed: fn must neither close it nor keep it.
func (rt *root) at(rel string, fn func(pfd int, name string) error) error {
	dir, name := split(rel)
	if err := component(name); err != nil {
		return err
	}
	pfd, release, err := rt.dir(dir)
	if err != nil {
		return err
	}
	defer release()
	return fn(pfd, name)
}

// open opens rel beneath the root, never following a symlink in any
// component (including the last). O_CLOEXEC and O_NOFOLLOW are always added.
func (rt *root) open(rel string, flags int, mode uint32) (int, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if rel == "." || rel == "" {
		return unix.Openat(rt.fd, ".", flags, mode)
	}
	fd := -1
	err := rt.at(rel, func(pfd int, name string) error {
		var err error
		for {
			fd, err = unix.Openat(pfd, name, flags, mode)
			if err != unix.EINTR {
				return err
			}
		}
	})
	return fd, err
}

// lstat stats rel without following a final symlink.
func (rt *root) lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := rt.at(rel, func(pfd int, name string) error {
		return unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	})
	return st, err
}

// remove deletes whatever is at rel (a directory with its contents), never
// following symlinks. A missing rel is not an error.
func (rt *root) remove(rel string) error {
	return rt.at(rel, func(pfd int, name string) error {
		return rt.removeAt(pfd, name, rel)
	})
}

// removeAt deletes name in pfd, which is rel in the target. Cached fds
// at and below rel are dropped, so that whatever is made there next is
// looked up afresh.
func (rt *root) removeAt(pfd int, name, rel string) error {
	removed, isDir, err := removeAt(pfd, name)
	if removed || isDir {
		rt.dirs.drop(rel, isDir)
	}
	return err
}

// removeAt deletes name in pfd and reports whether something was removed
// and whether it was a directory (emptied first, never following a
// symlink).
func removeAt(pfd int, name string) (removed, isDir bool, err error) {
	err = unix.Unlinkat(pfd, name, 0)
	if err == nil {
		return true, false, nil
	}
	if err == unix.ENOENT {
		return false, false, nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return false, false, err
	}
	// a directory: empty it first
	dfd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, false, err
	}
	d := os.NewFile(uintptr(dfd), name)
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if _, _, err := removeAt(dfd, n); err != nil {
				d.Close()
				return true, true, err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	d.Close()
	err = unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return true, true, nil
	}
	return true, true, err
}

// link makes newRel a hard link to oldRel (neither followed if a symlink).
func (rt *root) link(oldRel, newRel string) error {
	return rt.at(oldRel, func(opfd int, oname string) error {
		return rt.at(newRel, func(npfd int, nname string) error {
			return unix.Linkat(opfd, oname, npfd, nname, 0)
		})
	})
}

// dirCache holds O_PATH fds of directories under the root by relative
// path, least recently used evicted first. An fd in use (refs > 0) is
// never closed; one dropped or evicted while in use is closed by its last
// release. Safe for concurrent use.
type dirCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*cachedDir
	lru list.List // of *cachedDir, most recent first
}

type cachedDir struct {
	rel  string
	fd   int
	refs int
	gone bool // no longer in the cache: close at the last release
	elem *list.Element
}

func newDirCache(max int) *dirCache {
	return &dirCache{max: max, m: map[string]*cachedDir{}}
}

// get returns the cached directory rel, referenced, or nil.
func (c *dirCache) get(rel string) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[rel]
	if d != nil {
		d.refs++
		c.lru.MoveToFront(d.elem)
	}
	return d
}

// put caches fd as the directory rel and returns it referenced. When
// another goroutine cached rel meanwhile, fd is closed and that one is
// returned.
func (c *dirCache) put(rel string, fd int) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.m[rel]; d != nil {
		unix.Close(fd)
		d.refs++
		c.lru.MoveToFront(d.elem)
		return d
	}
	d := &cachedDir{rel: rel, fd: fd, refs: 1}
	d.elem = c.lru.PushFront(d)
	c.m[rel] = d
	for e := c.lru.Back(); e != nil && len(c.m) > c.max; {
		old := e.Value.(*cachedDir)
		e = e.Prev()
		if old.refs == 0 {
			c.evict(old)
		}
	}
	return d
}

func (c *dirCache) release(d *cachedDir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.refs--
	if d.refs == 0 && d.gone {
		unix.Close(d.fd)
	}
}

// evict removes d from the cache, closing it unless in use. c.mu is held.
func (c *dirCache) evict(d *cachedDir) {
	delete(c.m, d.rel)
	c.lru.Remove(d.elem)
	d.gone = true
	if d.refs == 0 {
		unix.Close(d.fd)
	}
}

// drop evicts rel and every directory below it. Unless subtree (rel was
// a directory), that is only looked for when rel itself is cached (it was
// replaced behind the restorer's back).
func (c *dirCache) drop(rel string, subtree bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !subtree && c.m[rel] == nil {
		return
	}
	for k, d := range c.m {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			c.evict(d)
		}
	}
}

func (c *dirCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.m {
		c.evict(d)
	}
}
