// Package sftp stores a repository on an SFTP server, typically a Hetzner
// Storage Box, through github.com/pkg/sftp over golang.org/x/crypto/ssh.
//
// Host keys are checked strictly against a known_hosts file: an unknown
// host fails with *UnknownHostError until the user accepts its fingerprint
// (Config.AcceptHostKey), which is then recorded; a changed key fails with
// *HostKeyChangedError. Only the SFTP subsystem is used, never a shell.
//
// A Backend keeps a pool of SSH connections with keepalives. Every
// operation is idempotent and is retried with exponential backoff over a
// fresh connection when the connection drops or the server restarts;
// permanent failures (authentication, permission, no space, not found) are
// returned at once. Saves write a temporary file in the target directory,
// fsync it (fsync@openssh.com) and rename it into place
// (posix-rename@openssh.com where offered). The layout is backend.Path, the
// same as the local backend's.
package sftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/backend"
)

// Backend is a repository on an SFTP server. It is safe for concurrent use.
type Backend struct {
	cfg      Config
	root     string
	pool     *pool
	keys     *hostKeys
	up, down *tokenBucket
	authDesc string
	ahead    *metaAhead // what Open read ahead (ahead.go); nil if nothing
}

var _ backend.Backend = (*Backend)(nil)
var _ backend.SpaceReporter = (*Backend)(nil)

// connect validates cfg, loads the key and makes the first connection, which
// proves host key and authentication.
func connect(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.KnownHostsFile == "" {
		if cfg.KnownHostsFile, err = defaultKnownHosts(); err != nil {
			return nil, err
		}
	}
	a, err := loadAuth(cfg)
	if err != nil {
		return nil, err
	}
	keys := &hostKeys{file: cfg.KnownHostsFile, accept: cfg.AcceptHostKey}
	d := &dialer{cfg: cfg, auth: a, keys: keys}
	b := &Backend{
		cfg:      cfg,
		root:     cfg.Path,
		pool:     newPool(cfg.Connections, d.dial),
		keys:     keys,
		authDesc: a.desc,
		up:       newTokenBucket(cfg.LimitUploadKiB, cfg.Now, cfg.Sleep),
		down:     newTokenBucket(cfg.LimitDownloadKiB, cfg.Now, cfg.Sleep),
	}
	s, c, err := b.pool.get(ctx)
	if err != nil {
		b.pool.close()
		return nil, fmt.Errorf("connect to %s: %w", cfg.Location(), err)
	}
	b.pool.put(s)
	c.startReader()
	b.pool.warm((*conn).startReader)
	if !strings.HasPrefix(b.root, "/") {
		// Resolve a home-relative path once so that every operation and
		// every later connection agree on it.
		wd, err := c.sftp.Getwd()
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("connect to %s: resolve home directory: %w", cfg.Location(), err)
		}
		b.root = path.Join(wd, b.root)
	}
	return b, nil
}

// Open connects to an existing repository. It fails with an error wrapping
// fs.ErrNotExist if there is no config file at cfg.Path.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.ReadAhead) > 0 {
		b.startReadAhead(cfg.ReadAhead)
	}
	if _, err := b.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err != nil {
		b.Close()
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("no repository at %s (run 'shopvault init' first): %w", b.Location(), err)
		}
		return nil, fmt.Errorf("open %s: %w", b.Location(), err)
	}
	return b, nil
}

// Create connects and prepares cfg.Path for a new repository: the
// directory (which may exist but must not hold a repository) and the
// top-level directories of backend.Dirs. Pack shard directories
// (data/<2 hex>) are created on demand by Save.
func Create(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	_, err = b.Stat(ctx, backend.Handle{Type: backend.ConfigFile})
	switch {
	case err == nil:
		b.Close()
		return nil, fmt.Errorf("a repository already exists at %s", b.Location())
	case !backend.IsNotExist(err):
		b.Close()
		return nil, fmt.Errorf("create repository at %s: %w", b.Location(), err)
	}
	err = b.retry(ctx, "create "+b.Location(), func(c *conn, _ int) error {
		for _, d := range backend.Dirs() {
			if strings.Contains(d, "/") {
				continue // pack shards
			}
			p := path.Join(b.root, d)
			if err := c.sftp.MkdirAll(p); err != nil {
				return b.writeError(c, "create directory "+p, err, 0)
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.cfg.Location() }

// Close closes every connection. In-flight operations fail.
func (b *Backend) Close() error {
	b.ahead.stop()
	b.pool.close()
	return nil
}

func (b *Backend) filename(h backend.Handle) (string, error) {
	if err := h.Valid(); err != nil {
		return "", err
	}
	return path.Join(b.root, backend.Path(h)), nil
}

func randomSuffix() string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return hex.EncodeToString(rnd[:])
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, r io.ReadSeeker, size int64) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("save %s: negative size %d", h, size)
	}
	what := "save " + h.String()
	b.ahead.stop()
	// The temporary file of an attempt cut off by a lost connection is
	// removed by the next attempt.
	var leftover string
	err = b.retry(ctx, what, func(c *conn, _ int) error {
		if leftover != "" {
			if err := c.sftp.Remove(leftover); err == nil || errors.Is(err, os.ErrNotExist) {
				leftover = ""
			} else if cerr := classify(c, what+": remove "+leftover, err); isTransient(cerr) {
				return cerr
			}
		}
		return b.save(ctx, c, what, name, r, size, &leftover)
	})
	return err
}

func (b *Backend) save(ctx context.Context, c *conn, what, name string, r io.ReadSeeker, size int64, leftover *string) (err error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: rewind: %w", what, err)
	}
	dir := path.Dir(name)
	tmp := path.Join(dir, TempPrefix+path.Base(name)+"-"+randomSuffix())
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	// Until this attempt removes it, tmp is the next attempt's to remove:
	// an OPEN that the server carried out just before the connection
	// dropped creates the file without its answer ever arriving.
	*leftover = tmp
	f, err := c.sftp.OpenFile(tmp, flags)
	if errors.Is(err, os.ErrNotExist) {
		if err := c.sftp.MkdirAll(dir); err != nil {
			return b.writeError(c, what+": create directory "+dir, err, size)
		}
		f, err = c.sftp.OpenFile(tmp, flags)
	}
	if err != nil {
		return b.writeError(c, what, err, size)
	}
	defer func() {
		switch {
		case err == nil:
			*leftover = "" // renamed into place
		case !c.isDead():
			_ = f.Close()
			if c.sftp.Remove(tmp) == nil {
				*leftover = ""
			}
		default:
			_ = f.Close()
		}
	}()
	src := &sourceReader{ctx: ctx, r: io.LimitReader(r, size+1), limit: b.up}
	n, err := f.ReadFromWithConcurrency(src, maxRequestsPerFile)
	if src.err != nil {
		return fmt.Errorf("%s: read source: %w", what, src.err)
	}
	if err != nil {
		return b.writeError(c, what, err, size)
	}
	if n != size {
		return fmt.Errorf("%s: source has %d bytes, expected %d", what, n, size)
	}
	if c.fsync {
		if err := f.Sync(); err != nil {
			return b.writeError(c, what+": fsync", err, size)
		}
	}
	if err := f.Close(); err != nil {
		return b.writeError(c, what+": close", err, size)
	}
	if c.posixRename {
		if err := c.sftp.PosixRename(tmp, name); err != nil {
			return b.writeError(c, what+": rename", err, size)
		}
		return nil
	}
	// Plain SFTP rename fails when the target exists; the content is the
	// same (names are content addresses, or a retry of this very Save).
	if err := c.sftp.Rename(tmp, name); err != nil {
		if _, serr := c.sftp.Stat(name); serr == nil {
			if rerr := c.sftp.Remove(name); rerr == nil {
				err = c.sftp.Rename(tmp, name)
			}
		}
		if err != nil {
			return b.writeError(c, what+": rename", err, size)
		}
	}
	return nil
}

// writeError classifies a failed write. A generic SSH_FX_FAILURE (OpenSSH
// reports ENOSPC, EDQUOT and EROFS this way) is checked with
// statvfs@openssh.com and turned into backend.ErrNoSpace or a read-only
// error, both permanent.
func (b *Backend) writeError(c *conn, what string, err error, need int64) error {
	if cerr := classify(c, what, err); isTransient(cerr) || errors.Is(cerr, backend.ErrPermanent) || backend.IsNotExist(cerr) {
		return cerr
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "quota") || strings.Contains(msg, "no space") || strings.Contains(msg, "disk full") {
		return backend.Permanent(fmt.Errorf("%s: %w: %w", what, backend.ErrNoSpace, err))
	}
	if c.statvfs {
		if st, serr := c.sftp.StatVFS(b.root); serr == nil {
			const stRdonly = 0x1 // SSH2_FXE_STATVFS_ST_RDONLY
			free := st.Bavail * st.Frsize
			if st.Flag&stRdonly != 0 {
				return backend.Permanent(fmt.Errorf("%s: the repository storage at %s is read-only: %w", what, b.Location(), err))
			}
			if free < uint64(need)+1<<20 {
				return backend.Permanent(fmt.Errorf("%s: %s (%s free): %w: %w", what, b.fullMessage(), sizeString(free), backend.ErrNoSpace, err))
			}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (b *Backend) fullMessage() string {
	if IsStorageBox(b.cfg.Host) {
		return "Storage Box is full"
	}
	return "the SFTP storage at " + b.cfg.Host + " is full"
}

// sizeString formats a free-space figure: GiB, or MiB below one GiB so that a
// nearly full box does not read "0.0 GiB".
func sizeString(n uint64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// Load implements backend.Backend. Only the requested range is read, with
// pkg/sftp's concurrent reads and one chunk of read-ahead.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if off < 0 || length < 0 {
		return fmt.Errorf("load %s: negative range %d+%d", h, off, length)
	}
	if data, ok, err := b.ahead.takeFile(ctx, h); ok {
		if err != nil {
			return err
		}
		return serveAhead("load "+h.String(), data, off, length, fn)
	}
	return b.load(ctx, h, off, length, fn)
}

// load is Load without what was read ahead.
func (b *Backend) load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	what := "load " + h.String()
	return b.retry(ctx, what, func(c *conn, _ int) error {
		if rs := c.rawReader(); rs != nil {
			return b.loadRaw(ctx, c, rs, what, name, off, length, fn)
		}
		f, err := c.sftp.Open(name)
		if err != nil {
			return classify(c, what, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return classify(c, what, err)
		}
		n := length
		if n == 0 {
			n = fi.Size() - off
			if n < 0 {
				return fmt.Errorf("%s: offset %d beyond size %d: %w", what, off, fi.Size(), io.ErrUnexpectedEOF)
			}
		}
		if off+n > fi.Size() {
			return rangeError(what, off, n, fi.Size())
		}
		rr := newRangeReader(ctx, f, name, off, n, b.down)
		ferr := fn(rr)
		return b.readerFailed(ctx, c, what, ferr, rr.stop())
	})
}

// loadRaw is Load through the connection's read session (rawread.go).
func (b *Backend) loadRaw(ctx context.Context, c *conn, rs *rawSession, what, name string, off, length int64, fn func(io.Reader) error) error {
	// No FSTAT round trip unless the range starts inside a file of unknown
	// length: a known range ends short files with a shortFileError, a
	// whole file is read to its EOF.
	handle, size, err := rs.open(name, length == 0 && off > 0)
	if err != nil {
		return b.rawError(c, what, err)
	}
	n := length
	switch {
	case length == 0 && off == 0:
		n = -1
	case length == 0:
		n = size - off
	}
	if n < -1 || (size >= 0 && off+n > size) {
		rs.closeHandle(handle)
		return rangeError(what, off, length, size)
	}
	rr := rs.newRange(ctx, name, handle, off, n, b.down)
	ferr := fn(rr)
	return b.readerFailed(ctx, c, what, ferr, rr.stop())
}

// readerFailed returns what a load ends with when fn returned ferr and the
// range reader under it saw rerr: a lost connection (transient) is retried;
// a file shorter than the range, or a cancellation, is fn's error as it is.
func (b *Backend) readerFailed(ctx context.Context, c *conn, what string, ferr, rerr error) error {
	if rerr == nil || ferr == nil {
		return ferr
	}
	var short *shortFileError
	if errors.As(rerr, &short) || errors.Is(rerr, ctx.Err()) {
		return ferr
	}
	if cerr := b.rawError(c, what, rerr); isTransient(cerr) {
		return cerr
	}
	return ferr
}

// rawError classifies an error of the read session; a response it could not
// parse switches the connection to pkg/sftp and is retried.
func (b *Backend) rawError(c *conn, what string, err error) error {
	if errors.Is(err, errRawProtocol) {
		c.rawBroken()
		return transient(fmt.Errorf("%s: %w", what, err))
	}
	return classify(c, what, err)
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	name, err := b.filename(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	var fi backend.FileInfo
	what := "stat " + h.String()
	err = b.retry(ctx, what, func(c *conn, _ int) error {
		st, err := c.sftp.Stat(name)
		if err != nil {
			return classify(c, what, err)
		}
		fi = backend.FileInfo{Name: h.Name, Size: st.Size(), ModTime: st.ModTime()}
		return nil
	})
	return fi, err
}

// Remove implements backend.Backend. When an earlier attempt was cut off by
// a lost connection, a file that is gone on retry counts as removed.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	name, err := b.filename(h)
	if err != nil {
		return err
	}
	what := "remove " + h.String()
	b.ahead.stop()
	return b.retry(ctx, what, func(c *conn, attempt int) error {
		err := c.sftp.Remove(name)
		if attempt > 1 && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return classify(c, what, err)
	})
}

// List implements backend.Backend. Pack shards are read in parallel over
// the pool; fn is called from the caller's goroutine.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := (backend.Handle{Type: t, Name: "x"}).Valid(); err != nil && t != backend.ConfigFile {
		return fmt.Errorf("list: %w", err)
	}
	dir := path.Join(b.root, string(t))
	if entries, ok, err := b.ahead.takeList(ctx, t); ok {
		if err != nil {
			return err
		}
		return emit(ctx, entries, fn)
	}
	if t != backend.PackFile {
		entries, err := b.readDir(ctx, dir)
		if err != nil {
			return err
		}
		return emit(ctx, entries, fn)
	}
	shards, err := b.readDir(ctx, dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan string)
	results := make(chan []os.FileInfo, b.cfg.Connections)
	g.Go(func() error {
		defer close(work)
		for _, s := range shards {
			if !s.IsDir() || strings.HasPrefix(s.Name(), ".") {
				continue
			}
			select {
			case work <- path.Join(dir, s.Name()):
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var workers sync.WaitGroup
	for i := 0; i < b.cfg.Connections*shardListsPerConn; i++ {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			for d := range work {
				entries, err := b.readDir(gctx, d)
				if err != nil {
					return err
				}
				select {
				case results <- entries:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	go func() {
		workers.Wait()
		close(results)
	}()
	// fn runs here, in the caller's goroutine.
	var ferr error
	for entries := range results {
		if ferr == nil {
			if ferr = emit(ctx, entries, fn); ferr != nil {
				cancel()
			}
		}
	}
	gerr := g.Wait()
	if ferr != nil {
		return ferr
	}
	return gerr
}

// shardListsPerConn is how many pack shard directories List reads at once
// per connection. Reading one is 4-5 sequential round trips (OPENDIR,
// READDIR until EOF at ~100 names each, CLOSE); SFTP multiplexes them, so
// many in flight hide the latency: 30k packs in 256 shards over 4
// connections at 20 ms RTT took 7.4 s with one per connection, 1.2 s with
// 8 and 0.8 s with 16 (kept at 8: a Storage Box is shared; loopback 0.23 s).
const shardListsPerConn = 8

func emit(ctx context.Context, entries []os.FileInfo, fn func(backend.FileInfo) error) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := fn(backend.FileInfo{Name: e.Name(), Size: e.Size(), ModTime: e.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// readDir lists dir; a missing directory is empty.
func (b *Backend) readDir(ctx context.Context, dir string) ([]os.FileInfo, error) {
	var entries []os.FileInfo
	what := "list " + dir
	err := b.retry(ctx, what, func(c *conn, _ int) error {
		var err error
		entries, err = c.sftp.ReadDirContext(ctx, dir)
		if errors.Is(err, os.ErrNotExist) {
			entries, err = nil, nil
		}
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return classify(c, what, err)
	})
	return entries, err
}

// TempPrefix starts the names of temporary files of Save; List skips them.
const TempPrefix = ".tmp-"

// RemoveStaleTemp removes temporary files of Saves that never finished
// (the client died mid-upload) and are older than age by the server's
// clock, in every directory of the repository. Use an age of hours so a
// Save running elsewhere is never disturbed. It returns how many it removed.
func (b *Backend) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	b.ahead.stop()
	var dirs []string
	for _, t := range backend.AllTypes {
		if t != backend.ConfigFile {
			dirs = append(dirs, path.Join(b.root, string(t)))
		}
	}
	dirs = append(dirs, b.root)
	shards, err := b.readDir(ctx, path.Join(b.root, string(backend.PackFile)))
	if err != nil {
		return 0, err
	}
	for _, s := range shards {
		if s.IsDir() {
			dirs = append(dirs, path.Join(b.root, string(backend.PackFile), s.Name()))
		}
	}
	cutoff := b.cfg.Now().Add(-age)
	removed := 0
	for _, d := range dirs {
		entries, err := b.readDir(ctx, d)
		if err != nil {
			return removed, err
		}
		for _, e := range entries {
			if !e.Mode().IsRegular() || !strings.HasPrefix(e.Name(), TempPrefix) || !e.ModTime().Before(cutoff) {
				continue
			}
			p := path.Join(d, e.Name())
			err := b.retry(ctx, "remove "+p, func(c *conn, attempt int) error {
				err := c.sftp.Remove(p)
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return classify(c, "remove "+p, err)
			})
			if err != nil {
				return removed, err
			}
			removed++
		}
	}
	return removed, nil
}

// FreeSpace implements backend.SpaceReporter with statvfs@openssh.com.
func (b *Backend) FreeSpace(ctx context.Context) (uint64, error) {
	var free uint64
	what := "free space of " + b.Location()
	err := b.retry(ctx, what, func(c *conn, _ int) error {
		if !c.statvfs {
			return fmt.Errorf("%s: the server does not offer statvfs@openssh.com", what)
		}
		st, err := c.sftp.StatVFS(b.root)
		if errors.Is(err, os.ErrNotExist) {
			st, err = c.sftp.StatVFS(path.Dir(b.root))
		}
		if err != nil {
			return classify(c, what, err)
		}
		free = st.Bavail * st.Frsize
		return nil
	})
	return free, err
}

// CheckSpace returns an error wrapping backend.ErrNoSpace ("Storage Box is
// full (N GiB free)") when less than need bytes are free. Servers without
// statvfs@openssh.com pass.
func (b *Backend) CheckSpace(ctx context.Context, need uint64) error {
	free, err := b.FreeSpace(ctx)
	if err != nil {
		if isTransient(err) || errors.Is(err, backend.ErrPermanent) {
			return err
		}
		return nil
	}
	if free < need {
		return backend.Permanent(fmt.Errorf("%s (%s free, %s needed): %w", b.fullMessage(), sizeString(free), sizeString(need), backend.ErrNoSpace))
	}
	return nil
}

// rangeReader reads [off, off+n) of f in chunks, keeping readAhead chunk
// reads in flight while the consumer reads the current one: on a link with
// a 20 ms round trip one 1 MiB read at a time capped a stream at ~45 MB/s.
type rangeReader struct {
	ctx   context.Context
	slots chan chan chunk // one per chunk, in order; capacity readAhead
	ch    chan chunk      // the slot being read (errChan after an error)
	free  chan []byte     // consumed chunk buffers, reused by the fetcher
	done  chan struct{}
	exit  chan struct{} // closed when the producer and every fetch have ended
	cur   []byte
	buf   []byte // the buffer cur lies in
	err   error  // the first error seen by the consumer
}

type chunk struct {
	data []byte
	err  error
}

const (
	readChunk = 1 << 20
	readAhead = 3
)

func newRangeReader(ctx context.Context, f *pkgsftp.File, name string, off, n int64, limit *tokenBucket) *rangeReader {
	rr := &rangeReader{ctx: ctx, slots: make(chan chan chunk, readAhead), free: make(chan []byte, readAhead+1),
		done: make(chan struct{}), exit: make(chan struct{})}
	go func() {
		var fetches sync.WaitGroup
		var failed atomic.Bool
		defer close(rr.exit)
		defer fetches.Wait()
		defer close(rr.slots)
		end := off + n
		for pos := off; pos < end && !failed.Load(); {
			sz := min(int64(readChunk), end-pos)
			slot := make(chan chunk, 1)
			select {
			case rr.slots <- slot: // blocks while readAhead chunks are unread
			case <-rr.done:
				return
			}
			if err := limit.wait(ctx, int(sz)); err != nil {
				slot <- chunk{err: err}
				return
			}
			var buf []byte
			select {
			case buf = <-rr.free:
			default:
				buf = make([]byte, readChunk)
			}
			fetches.Add(1)
			go func(pos, sz int64, buf []byte) {
				defer fetches.Done()
				buf = buf[:sz]
				m, err := f.ReadAt(buf, pos)
				if int64(m) == sz {
					err = nil
				} else if err == nil || err == io.EOF {
					err = &shortFileError{name: name, at: pos + int64(m), want: end}
				}
				if err != nil {
					failed.Store(true)
				}
				slot <- chunk{data: buf[:m], err: err}
			}(pos, sz, buf)
			pos += sz
		}
	}()
	return rr
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.cur) == 0 {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			return 0, err
		}
		if r.buf != nil {
			select {
			case r.free <- r.buf[:cap(r.buf)]:
			default:
			}
			r.buf = nil
		}
		ch := r.ch
		if ch == nil {
			slot, ok := <-r.slots
			if !ok {
				return 0, io.EOF
			}
			ch = slot
		}
		c, ok := <-ch
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.buf = c.data, c.data
		if c.err != nil && len(c.data) == 0 {
			r.err = c.err
			return 0, c.err
		}
		if c.err != nil {
			// Deliver the data first, then the error on the next Read.
			r.ch = errChan(c.err)
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func errChan(err error) chan chunk {
	ch := make(chan chunk, 1)
	ch <- chunk{err: err}
	close(ch)
	return ch
}

// stop ends the read-ahead and returns the error the consumer saw, if any.
func (r *rangeReader) stop() error {
	close(r.done)
	<-r.exit
	return r.err
}
