// Package local stores a repository in a directory of the local filesystem.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/shopvault/shopvault/backend"
)

// Backend is a repository in a local directory.
type Backend struct {
	root string
}

// Open opens the repository directory root. It fails with an error
// wrapping fs.ErrNotExist if root has no config file.
func Open(root string) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository path %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "config")); err != nil {
		return nil, fmt.Errorf("no repository at %s (run 'shopvault init' first): %w", abs, err)
	}
	return &Backend{root: abs}, nil
}

// Create prepares root (which may exist but must not hold a repository)
// and returns a backend for it.
func Create(root string) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository path %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "config")); err == nil {
		return nil, fmt.Errorf("a repository already exists at %s", abs)
	}
	for _, d := range append([]string{""}, backend.Dirs()...) {
		if err := os.MkdirAll(filepath.Join(abs, filepath.FromSlash(d)), 0o700); err != nil {
			return nil, fmt.Errorf("create repository at %s: %w", abs, mapErr(err))
		}
	}
	return &Backend{root: abs}, nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.root }

func (b *Backend) filename(h backend.Handle) (string, error) {
	if err := h.Valid(); err != nil {
		return "", err
	}
	return filepath.Join(b.root, filepath.FromSlash(backend.Path(h))), nil
}

func mapErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", backend.ErrNoSpace, backend.Permanent(err))
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return backend.Permanent(err)
	}
	return err
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, r io.ReadSeeker, size int64) (err error) {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".tmp-"+h.Name+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %s: rewind: %w", h, err)
	}
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: r})
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if n != size {
		return fmt.Errorf("save %s: wrote %d bytes, expected %d", h, n, size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: sync: %w", h, mapErr(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	if off < 0 || length < 0 {
		return fmt.Errorf("load %s: negative range", h)
	}
	if length == 0 {
		length = fi.Size() - off
		if length < 0 {
			return fmt.Errorf("load %s: offset %d beyond size %d: %w", h, off, fi.Size(), io.ErrUnexpectedEOF)
		}
	}
	if off+length > fi.Size() {
		return fmt.Errorf("load %s: range %d+%d beyond size %d: %w", h, off, length, fi.Size(), io.ErrUnexpectedEOF)
	}
	return fn(io.NewSectionReader(f, off, length))
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	name, err := b.filename(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(name)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	dir := filepath.Join(b.root, string(t))
	dirs := []string{dir}
	if t == backend.PackFile {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("list %s: %w", t, err)
		}
		dirs = dirs[:0]
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !e.Type().IsRegular() || len(e.Name()) > 0 && e.Name()[0] == '.' {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("list %s: %w", t, err)
			}
			if err := fn(backend.FileInfo{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	return nil
}

// FreeSpace implements backend.SpaceReporter.
func (b *Backend) FreeSpace(ctx context.Context) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", b.root, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }

// TempDir implements backend.FileCommitter: temporary packs live in data/
// under dot-names that List skips.
func (b *Backend) TempDir() string { return filepath.Join(b.root, string(backend.PackFile)) }

// CommitFile implements backend.FileCommitter.
func (b *Backend) CommitFile(ctx context.Context, h backend.Handle, path string, size int64) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != size {
		err = fmt.Errorf("temporary file has %d bytes, expected %d", fi.Size(), size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", h, mapErr(err))
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return fmt.Errorf("commit %s: %w", h, mapErr(err))
	}
	if err := os.Rename(path, name); err != nil {
		return fmt.Errorf("commit %s: %w", h, mapErr(err))
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
