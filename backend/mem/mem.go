// Package mem is an in-memory backend for unit tests.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// Backend keeps files in memory. The zero value is not usable; call New.
type Backend struct {
	mu    sync.Mutex
	files map[backend.Handle][]byte
	mtime map[backend.Handle]time.Time
	now   func() time.Time
}

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{files: map[backend.Handle][]byte{}, mtime: map[backend.Handle]time.Time{}, now: time.Now}
}

func key(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		h.Name = ""
	}
	return h
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return "mem:" }

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, r io.ReadSeeker, size int64) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	buf, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if int64(len(buf)) != size {
		return fmt.Errorf("save %s: read %d bytes, expected %d", h, len(buf), size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files[key(h)] = buf
	b.mtime[key(h)] = b.now()
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	b.mu.Lock()
	buf, ok := b.files[key(h)]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("load %s: %w", h, fs.ErrNotExist)
	}
	if off < 0 || length < 0 || off > int64(len(buf)) {
		return fmt.Errorf("load %s: bad range: %w", h, io.ErrUnexpectedEOF)
	}
	if length == 0 {
		length = int64(len(buf)) - off
	}
	if off+length > int64(len(buf)) {
		return fmt.Errorf("load %s: range %d+%d beyond size %d: %w", h, off, length, len(buf), io.ErrUnexpectedEOF)
	}
	return fn(bytes.NewReader(buf[off : off+length]))
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	buf, ok := b.files[key(h)]
	if !ok {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, fs.ErrNotExist)
	}
	return backend.FileInfo{Name: h.Name, Size: int64(len(buf)), ModTime: b.mtime[key(h)]}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	b.mu.Lock()
	var infos []backend.FileInfo
	for h, buf := range b.files {
		if h.Type == t {
			infos = append(infos, backend.FileInfo{Name: h.Name, Size: int64(len(buf)), ModTime: b.mtime[h]})
		}
	}
	b.mu.Unlock()
	for _, fi := range infos {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.files[key(h)]; !ok {
		return fmt.Errorf("remove %s: %w", h, fs.ErrNotExist)
	}
	delete(b.files, key(h))
	delete(b.mtime, key(h))
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }
