package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shopvault/shopvault/repo"
)

// The change cache remembers, per directory, each file's identity
// (inode, size, mtime, ctime) and content blob ids, so an unchanged file
// is not read again. It lives on the host (default
// /var/cache/shopvault/<repository id>/dirs), one small file per
// directory. Losing it costs a re-read, never a re-upload: blobs found in
// the index are not stored again.
type dirCache struct {
	root  string // "" = disabled
	start time.Time
}

type cacheEntry struct {
	Name    string
	Inode   uint64
	Size    uint64
	MtimeNs int64
	CtimeNs int64
	Content []repo.ID
}

func newDirCache(cacheDir, repoID string, now time.Time) *dirCache {
	if cacheDir == "" {
		return &dirCache{}
	}
	return &dirCache{root: filepath.Join(cacheDir, repoID, "dirs"), start: now}
}

func (c *dirCache) file(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	h := hex.EncodeToString(sum[:16])
	return filepath.Join(c.root, h[:2], h)
}

// load returns the cached entries of dir and the raw bytes (for a cheap
// unchanged check on store). A damaged or missing file is a miss.
func (c *dirCache) load(dir string) (map[string]*cacheEntry, []byte) {
	if c.root == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.file(dir))
	if err != nil {
		return nil, nil
	}
	entries, err := decodeCache(data, dir)
	if err != nil {
		return nil, nil
	}
	m := make(map[string]*cacheEntry, len(entries))
	for i := range entries {
		m[entries[i].Name] = &entries[i]
	}
	return m, data
}

func (c *dirCache) store(dir string, entries []cacheEntry, old []byte) error {
	if c.root == "" || (len(entries) == 0 && old == nil) {
		return nil // nothing to remember: a directory of directories
	}
	data := encodeCache(dir, entries)
	name := c.file(dir)
	if bytes.Equal(data, old) {
		now := time.Now()
		return os.Chtimes(name, now, now)
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), name)
}

// ErrBusy is returned when another backup of the same repository runs on
// this host with the same cache.
var ErrBusy = errors.New("another backup of this repository is running on this host")

// lock takes an exclusive lock on the cache for the duration of a backup;
// the returned func releases it. The kernel drops it if the process dies.
func (c *dirCache) lock() (func(), error) {
	if c.root == "" {
		return func() {}, nil
	}
	dir := filepath.Dir(c.root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("change cache %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("change cache %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (cache %s is locked); wait for it to finish", ErrBusy, dir)
		}
		return nil, fmt.Errorf("lock change cache %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// sweep removes cache files not used since the run started.
func (c *dirCache) sweep() {
	if c.root == "" {
		return
	}
	_ = filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(c.start.Add(-time.Second)) {
			_ = os.Remove(p)
		}
		return nil
	})
}

var cacheMagic = []byte("SVC1")

func encodeCache(dir string, entries []cacheEntry) []byte {
	out := append([]byte{}, cacheMagic...)
	out = binary.AppendUvarint(out, uint64(len(dir)))
	out = append(out, dir...)
	out = binary.AppendUvarint(out, uint64(len(entries)))
	for _, e := range entries {
		out = binary.AppendUvarint(out, uint64(len(e.Name)))
		out = append(out, e.Name...)
		out = binary.AppendUvarint(out, e.Inode)
		out = binary.AppendUvarint(out, e.Size)
		out = binary.AppendVarint(out, e.MtimeNs)
		out = binary.AppendVarint(out, e.CtimeNs)
		out = binary.AppendUvarint(out, uint64(len(e.Content)))
		for _, id := range e.Content {
			out = append(out, id[:]...)
		}
	}
	return out
}

var errBadCache = errors.New("bad cache file")

func decodeCache(data []byte, dir string) ([]cacheEntry, error) {
	if !bytes.HasPrefix(data, cacheMagic) {
		return nil, errBadCache
	}
	b := data[len(cacheMagic):]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() (string, bool) {
		n := uv()
		if n > uint64(len(b)) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	d, ok := str()
	if !ok || d != dir {
		return nil, errBadCache // a hash collision or another directory's file
	}
	n := uv()
	if n > uint64(len(b)) {
		return nil, errBadCache
	}
	out := make([]cacheEntry, 0, n)
	for i := uint64(0); i < n; i++ {
		var e cacheEntry
		if e.Name, ok = str(); !ok {
			return nil, errBadCache
		}
		e.Inode, e.Size, e.MtimeNs, e.CtimeNs = uv(), uv(), sv(), sv()
		nc := uv()
		if nc*32 > uint64(len(b)) {
			return nil, errBadCache
		}
		e.Content = make([]repo.ID, nc)
		for j := range e.Content {
			copy(e.Content[j][:], b[:32])
			b = b[32:]
		}
		if b == nil {
			return nil, errBadCache
		}
		out = append(out, e)
	}
	return out, nil
}
