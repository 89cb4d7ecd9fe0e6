package restore

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// root is the restore target, opened once. Every path the restorer touches
// is a slash-separated path relative to it, made of names validated with
// repo.ValidName, and every lookup is resolved by the kernel beneath the
// root fd with symlinks refused in every component (openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS). On kernels without openat2 (before
// 5.6, or a seccomp filter that hides it) the same rule is enforced by
// walking the components one by one with O_NOFOLLOW|O_DIRECTORY.
//
// So a hostile repository, or a target that already holds symlinks, cannot
// make the restorer write outside the target: a symlink is only ever
// created, replaced or stat'ed, never traversed.
type root struct {
	fd        int
	path      string
	noOpenat2 bool
}

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openRoot opens dir (which must exist and be a directory).
func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open restore target %s: %w", dir, err)
	}
	rt := &root{fd: fd, path: dir}
	probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		rt.noOpenat2 = true
	} else {
		unix.Close(probe)
	}
	return rt, nil
}

func (rt *root) close() error { return unix.Close(rt.fd) }

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

// open opens rel beneath the root, never following a symlink in any
// component (including the last). O_CLOEXEC and O_NOFOLLOW are always added.
func (rt *root) open(rel string, flags int, mode uint32) (int, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if !rt.noOpenat2 {
		how := &unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: resolveFlags}
		for {
			fd, err := unix.Openat2(rt.fd, rel, how)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue // a concurrent rename elsewhere on the system; retry
			}
			return fd, err
		}
	}
	if rel == "." {
		return unix.Openat(rt.fd, ".", flags, mode)
	}
	pfd, name, err := rt.walkParent(rel)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return unix.Openat(pfd, name, flags, mode)
}

// walkParent opens rel's parent directory component by component without
// following symlinks (the fallback when openat2 is unavailable).
func (rt *root) walkParent(rel string) (int, string, error) {
	dir, name := path.Split(rel)
	fd, err := unix.Openat(rt.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		if c == "." || c == ".." {
			unix.Close(fd)
			return -1, "", unix.EXDEV
		}
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if err == unix.ENOTDIR {
				err = unix.ELOOP // a symlink (or a file) where a directory must be
			}
			return -1, "", err
		}
		fd = nfd
	}
	return fd, name, nil
}

// parent opens rel's parent directory (O_PATH) and returns it with rel's
// last component. The caller closes the fd.
func (rt *root) parent(rel string) (int, string, error) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	fd, err := rt.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", err
	}
	return fd, name, nil
}

// lstat stats rel without following a final symlink.
func (rt *root) lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, name, err := rt.parent(rel)
	if err != nil {
		return st, err
	}
	defer unix.Close(pfd)
	err = unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// at runs fn with rel's parent directory fd and last component.
func (rt *root) at(rel string, fn func(pfd int, name string) error) error {
	pfd, name, err := rt.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return fn(pfd, name)
}

// remove deletes whatever is at rel (a directory with its contents), never
// following symlinks. A missing rel is not an error.
func (rt *root) remove(rel string) error {
	return rt.at(rel, func(pfd int, name string) error {
		return removeAt(pfd, name)
	})
}

func removeAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	// a directory: empty it first
	dfd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dfd), name)
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if err := removeAt(dfd, n); err != nil {
				d.Close()
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	d.Close()
	err = unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// link makes newRel a hard link to oldRel (neither followed if a symlink).
func (rt *root) link(oldRel, newRel string) error {
	opfd, oname, err := rt.parent(oldRel)
	if err != nil {
		return err
	}
	defer unix.Close(opfd)
	return rt.at(newRel, func(npfd int, nname string) error {
		return unix.Linkat(opfd, oname, npfd, nname, 0)
	})
}
