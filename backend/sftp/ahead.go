package sftp

// Reading a repository's metadata ahead.
//
// Opening a repository is a chain of small reads, each waiting for the one
// before it: the config, the key files (a listing, then a load), the index
// and snapshot listings and their files, then a snapshot's refs list and its
// delta parents one by one. Over a Storage Box link each step is two to four
// round trips. When Config.ReadAhead names file types, Open starts all of it
// at once: the config, and for each type its listing followed by loads of
// its files (newest first, up to a byte budget and aheadFiles per type),
// over the pool. The repository code asks for the same files in its own
// order and finds them read or in flight; a file whose load has not begun
// it loads itself, and a read ahead that failed after its retries is its
// answer.
//
// What was read ahead is served once per listing and once per file, and
// only as the state of the repository when it was opened: the first write
// (Save, Remove: a lock file counts) drops all of it, so nothing read after
// a lock was taken, or after this process changed the repository, ever comes
// from before; so does its age passing aheadMaxAge (which also frees what
// no command asked for, such as the refs lists of other snapshots), and
// Close.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shopvault/shopvault/backend"
)

const (
	// aheadMaxAge is how long what was read ahead may be served and is
	// kept (opening a repository takes seconds, even a large index over a
	// slow link).
	aheadMaxAge = 30 * time.Second
	// aheadLoads bounds the loads read ahead at once (over all types).
	aheadLoads = 16
	// aheadFiles bounds the files of one type read ahead: a repository of
	// years of nightly snapshots has thousands of small snapshot files, and
	// a command on one named snapshot needs only that one.
	aheadFiles = 64
)

// aheadBudget is how many bytes of files of type t are read ahead: the
// newest files whose sizes add up to at most this (0: none, the type is
// not read ahead).
func aheadBudget(t backend.FileType) int64 {
	switch t {
	case backend.KeyFile:
		return 1 << 20
	case backend.SnapshotFile:
		return 8 << 20
	case backend.RefsFile:
		return 8 << 20
	case backend.IndexFile:
		return 32 << 20
	}
	return 0
}

// metaAhead is the metadata of one Open, read ahead.
type metaAhead struct {
	now    func() time.Time
	cancel context.CancelFunc
	expiry *time.Timer // frees everything after aheadMaxAge

	mu      sync.Mutex
	stopped bool
	started time.Time
	lists   map[backend.FileType]*aheadList
	files   map[backend.Handle]*aheadFile
}

type aheadList struct {
	done    chan struct{}
	entries []os.FileInfo
	err     error
}

type aheadFile struct {
	done    chan struct{}
	started bool // its load has begun (guarded by metaAhead.mu)
	data    []byte
	err     error
}

// startReadAhead reads the config and the files of types ahead.
func (b *Backend) startReadAhead(types []backend.FileType) {
	ctx, cancel := context.WithCancel(context.Background())
	ra := &metaAhead{
		now:     b.cfg.Now,
		cancel:  cancel,
		started: b.cfg.Now(),
		lists:   map[backend.FileType]*aheadList{},
		files:   map[backend.Handle]*aheadFile{},
	}
	b.ahead = ra
	sem := make(chan struct{}, aheadLoads)
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.expiry = time.AfterFunc(aheadMaxAge, ra.stop)
	cfg := backend.Handle{Type: backend.ConfigFile}
	go b.loadAhead(ctx, sem, cfg, 0, ra.addFile(cfg))
	for _, t := range types {
		if aheadBudget(t) == 0 {
			continue // packs, locks: never read ahead (the config always is)
		}
		l := &aheadList{done: make(chan struct{})}
		ra.lists[t] = l
		go b.listAhead(ctx, sem, t, l)
	}
}

// addFile registers h as read ahead; ra.mu is held.
func (ra *metaAhead) addFile(h backend.Handle) *aheadFile {
	f := &aheadFile{done: make(chan struct{})}
	ra.files[h] = f
	return f
}

// listAhead lists t and starts loading its newest files. The files are
// registered before the listing is handed out, so a load of one of them
// never misses it and reads it a second time.
func (b *Backend) listAhead(ctx context.Context, sem chan struct{}, t backend.FileType, l *aheadList) {
	entries, err := b.readDir(ctx, path.Join(b.root, string(t)))
	var picked []os.FileInfo
	for _, e := range entries {
		if e.Mode().IsRegular() && !strings.HasPrefix(e.Name(), ".") && (backend.Handle{Type: t, Name: e.Name()}).Valid() == nil {
			picked = append(picked, e)
		}
	}
	slices.SortFunc(picked, func(a, b os.FileInfo) int { return b.ModTime().Compare(a.ModTime()) })
	var total int64
	n := 0
	for _, e := range picked {
		if total+e.Size() > aheadBudget(t) || n == aheadFiles {
			break
		}
		total += e.Size()
		n++
	}
	picked = picked[:n]
	ra := b.ahead
	ra.mu.Lock()
	l.entries, l.err = entries, err
	var files []*aheadFile
	if !ra.stopped && err == nil {
		for _, e := range picked {
			files = append(files, ra.addFile(backend.Handle{Type: t, Name: e.Name()}))
		}
	}
	close(l.done)
	ra.mu.Unlock()
	for i, f := range files {
		go b.loadAhead(ctx, sem, backend.Handle{Type: t, Name: picked[i].Name()}, picked[i].Size(), f)
	}
}

// loadAhead loads h into f. A file of known size is read as that range:
// the reads then end with its last DATA, not with EOF statuses, which
// sshd (Nagle's algorithm on) holds back for an acknowledgement that
// Linux delays: a load of a key file at 20 ms RTT took 75 ms instead of 45.
func (b *Backend) loadAhead(ctx context.Context, sem chan struct{}, h backend.Handle, size int64, f *aheadFile) {
	defer close(f.done)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		f.err = ctx.Err()
		return
	}
	defer func() { <-sem }()
	ra := b.ahead
	ra.mu.Lock()
	mine := ra.files[h] == f
	f.started = mine
	ra.mu.Unlock()
	if !mine {
		// Taken before its turn came (the taker loads it itself), or
		// everything was dropped.
		f.err = errAheadSkipped
		return
	}
	f.err = b.load(ctx, h, 0, size, func(r io.Reader) error {
		var err error
		f.data, err = io.ReadAll(r)
		return err
	})
}

// fresh reports whether what was read ahead may still be served; ra.mu is
// held.
func (ra *metaAhead) fresh() bool {
	return !ra.stopped && ra.now().Sub(ra.started) < aheadMaxAge
}

// takeList hands out the listing of t read ahead, once: its entries, or
// the error it failed with after its retries (a caller that listed again
// would only wait as long once more). ok is false when there is nothing to
// serve: the caller lists t itself.
func (ra *metaAhead) takeList(ctx context.Context, t backend.FileType) (entries []os.FileInfo, ok bool, err error) {
	if ra == nil {
		return nil, false, nil
	}
	ra.mu.Lock()
	l := ra.lists[t]
	delete(ra.lists, t)
	ra.mu.Unlock()
	if l == nil {
		return nil, false, nil
	}
	if ok, err := ra.await(ctx, l.done, &l.err); !ok || err != nil {
		return nil, ok, err
	}
	return l.entries, true, nil
}

// takeFile hands out the content of h read ahead, once, as takeList does.
// A load that has not begun is the caller's to make: it never waits behind
// the queue of reads ahead.
func (ra *metaAhead) takeFile(ctx context.Context, h backend.Handle) (data []byte, ok bool, err error) {
	if ra == nil {
		return nil, false, nil
	}
	ra.mu.Lock()
	f := ra.files[h]
	delete(ra.files, h)
	started := f != nil && f.started
	ra.mu.Unlock()
	if !started {
		return nil, false, nil
	}
	if ok, err := ra.await(ctx, f.done, &f.err); !ok || err != nil {
		return nil, ok, err
	}
	return f.data, true, nil
}

// await waits for done and says whether what it guards is the answer
// (ok), with its error (*errp, read once done). It is not when it is no
// longer fresh, or when it was skipped or stopped (cancelled) rather than
// failed.
func (ra *metaAhead) await(ctx context.Context, done <-chan struct{}, errp *error) (ok bool, err error) {
	select {
	case <-done:
	case <-ctx.Done():
		return false, nil
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	err = *errp
	if !ra.fresh() || errors.Is(err, errAheadSkipped) || errors.Is(err, context.Canceled) {
		return false, nil
	}
	return true, err
}

// stop drops everything read ahead and stops what is still being read.
func (ra *metaAhead) stop() {
	if ra == nil {
		return
	}
	ra.mu.Lock()
	if !ra.stopped {
		ra.stopped = true
		ra.expiry.Stop()
		ra.lists, ra.files = map[backend.FileType]*aheadList{}, map[backend.Handle]*aheadFile{}
		ra.cancel()
	}
	ra.mu.Unlock()
}

// serveAhead gives fn the part [off, off+length) of data (length 0: to
// the end), as Load would.
func serveAhead(what string, data []byte, off, length int64, fn func(io.Reader) error) error {
	n := length
	if n == 0 {
		n = int64(len(data)) - off
	}
	if off > int64(len(data)) || n < 0 || off+n > int64(len(data)) {
		return rangeError(what, off, length, int64(len(data)))
	}
	return fn(bytes.NewReader(data[off : off+n]))
}

// errAheadSkipped ends a read ahead that was not needed any more.
var errAheadSkipped = errors.New("read ahead skipped")

// rangeError is a range that does not fit in a file of size bytes.
func rangeError(what string, off, length, size int64) error {
	return fmt.Errorf("%s: range %d+%d beyond size %d: %w", what, off, length, size, io.ErrUnexpectedEOF)
}
