package repo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/backend"
)

// SaverStats counts what a BlobSaver stored.
type SaverStats struct {
	Blobs       int64 // new blobs stored
	RawBytes    int64 // plaintext bytes of new blobs
	StoredBytes int64 // bytes of packs uploaded
	Packs       int64
}

// smallSave is the size up to which a blob is compressed in a small buffer.
const smallSave = 64 << 10

// BlobSaver deduplicates, compresses, packs, encrypts and uploads blobs.
// Save may be called from many goroutines. Finish must be called to
// upload the last packs and write the index; after an error, call Abort.
type BlobSaver struct {
	r       *Repository
	ctx     context.Context
	g       *errgroup.Group
	uploads chan *packWriter
	mu      sync.Mutex
	// idle holds the open packs no Save is writing to; each Save takes
	// one (or opens a new one), so workers encrypt and write in parallel.
	idle      map[BlobType][]*packWriter
	unindexd  []IndexPack
	stats     SaverStats
	closed    bool
	bufPool   sync.Pool // *[]byte compression buffers for blobs over smallSave
	smallPool sync.Pool // and for the others
	// indexEvery writes an index file after this many packs, so an
	// interrupted backup's uploads are reused by the next one.
	indexEvery int
}

// NewBlobSaver starts uploaders goroutines. ctx bounds the whole save;
// cancelling it aborts uploads.
func (r *Repository) NewBlobSaver(ctx context.Context, uploaders int) *BlobSaver {
	if uploaders < 1 {
		uploaders = 1
	}
	g, gctx := errgroup.WithContext(ctx)
	s := &BlobSaver{r: r, ctx: gctx, g: g, uploads: make(chan *packWriter, 1),
		idle: map[BlobType][]*packWriter{}, indexEvery: 16}
	for i := 0; i < uploaders; i++ {
		g.Go(s.uploader)
	}
	return s
}

// Stats returns what has been stored so far.
func (s *BlobSaver) Stats() SaverStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Known reports whether a blob is stored or being stored.
func (s *BlobSaver) Known(h BlobHandle) bool { return s.r.idx.Has(h) }

// Save stores data as a blob of type t unless it exists, and returns its id
// and whether it was new.
func (s *BlobSaver) Save(ctx context.Context, t BlobType, data []byte) (ID, bool, error) {
	id := s.r.BlobID(data)
	added, err := s.SaveID(ctx, BlobHandle{Type: t, ID: id}, data)
	return id, added, err
}

// SaveID stores data under the given handle (id must be BlobID(data)).
func (s *BlobSaver) SaveID(ctx context.Context, h BlobHandle, data []byte) (bool, error) {
	if len(data) > maxBlobSize {
		return false, fmt.Errorf("blob of %d bytes exceeds the maximum %d", len(data), maxBlobSize)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return false, errors.New("blob saver is closed")
	}
	if !s.r.idx.reserve(h) {
		return false, nil
	}

	// Small blobs (trees, SQL chunks) take small buffers: every directory
	// of a backup saves its tree on its own goroutine, and hundreds of
	// them at once each holding a 1 MiB buffer made a first backup's
	// peak heap ~90 MB bigger.
	pool, size := &s.bufPool, 1<<20
	if len(data) <= smallSave {
		pool, size = &s.smallPool, smallSave+smallSave/8
	}
	bp, _ := pool.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, size)
		bp = &b
	}
	buf, compressed := s.r.codec.compress((*bp)[:0], data)
	stored := buf
	if !compressed {
		stored = data
	}
	full, err := s.add(h, stored, len(data))
	*bp = buf[:0] // keeps a buffer zstd grew, compressed or not
	pool.Put(bp)
	if err != nil {
		s.r.idx.unreserve(h)
		return false, err
	}
	if full != nil {
		select {
		case s.uploads <- full:
		case <-ctx.Done():
			full.discard()
			return false, ctx.Err()
		case <-s.ctx.Done():
			full.discard()
			return false, s.uploadErr()
		}
	}
	return true, nil
}

func (s *BlobSaver) uploadErr() error {
	if err := context.Cause(s.ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	// the errgroup's context ends on the first upload error; report it
	err := s.g.Wait()
	if err == nil {
		err = s.ctx.Err()
	}
	return err
}

// add appends a stored blob to an open pack of its type (taken for the
// duration of the write, so concurrent Saves use different packs) and
// returns the pack if it is now full.
func (s *BlobSaver) add(h BlobHandle, stored []byte, rawLen int) (*packWriter, error) {
	s.mu.Lock()
	var p *packWriter
	if n := len(s.idle[h.Type]); n > 0 {
		p = s.idle[h.Type][n-1]
		s.idle[h.Type] = s.idle[h.Type][:n-1]
	}
	s.mu.Unlock()
	if p == nil {
		var err error
		if p, err = newPackWriter(s.r); err != nil {
			return nil, err
		}
	}
	if err := p.add(h, stored, rawLen); err != nil {
		p.discard()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Blobs++
	s.stats.RawBytes += int64(rawLen)
	if p.offset >= s.r.cfg.PackSize {
		return p, nil
	}
	s.idle[h.Type] = append(s.idle[h.Type], p)
	return nil, nil
}

func (s *BlobSaver) uploader() error {
	for p := range s.uploads {
		if err := s.upload(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *BlobSaver) upload(p *packWriter) error {
	defer p.discard()
	id, size, err := p.finish()
	if err != nil {
		return err
	}
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	if fc, ok := s.r.be.(backend.FileCommitter); ok && s.r.TempDir == "" {
		// The pack was assembled next to the repository: move it in place.
		name := p.f.Name()
		p.f.Close()
		p.f = nil
		if err := fc.CommitFile(s.ctx, h, name, size); err != nil {
			os.Remove(name)
			return fmt.Errorf("store pack: %w", err)
		}
	} else {
		if _, err := p.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := s.r.be.Save(s.ctx, h, p.f, size); err != nil {
			return fmt.Errorf("upload pack: %w", err)
		}
	}
	s.r.idx.addPack(id, size, p.blobs)
	s.mu.Lock()
	s.stats.Packs++
	s.stats.StoredBytes += size
	s.unindexd = append(s.unindexd, IndexPack{ID: id, Size: size, Blobs: p.blobs})
	var batch []IndexPack
	if len(s.unindexd) >= s.indexEvery {
		batch, s.unindexd = s.unindexd, nil
	}
	s.mu.Unlock()
	if batch != nil {
		if _, err := s.r.SaveIndex(s.ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// Finish uploads the remaining packs, waits for all uploads and writes
// the index for every pack not yet indexed.
func (s *BlobSaver) Finish(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var last []*packWriter
	for t, ps := range s.idle {
		last = append(last, ps...)
		delete(s.idle, t)
	}
	s.mu.Unlock()
	var sendErr error
	for _, p := range last {
		select {
		case s.uploads <- p:
		case <-s.ctx.Done():
			p.discard()
			sendErr = s.ctx.Err()
		}
	}
	close(s.uploads)
	if err := s.g.Wait(); err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	s.mu.Lock()
	batch := s.unindexd
	s.unindexd = nil
	s.mu.Unlock()
	if len(batch) > 0 {
		if _, err := s.r.SaveIndex(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// Abort stops the saver after a failure and removes temporary files. It
// is safe to call after Finish.
func (s *BlobSaver) Abort() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for t, ps := range s.idle {
			for _, p := range ps {
				p.discard()
			}
			delete(s.idle, t)
		}
		s.mu.Unlock()
		close(s.uploads)
	} else {
		s.mu.Unlock()
	}
	go func() {
		for p := range s.uploads {
			p.discard()
		}
	}()
	_ = s.g.Wait()
	s.r.idx.dropPending()
}

// packWriter assembles one pack in a temporary file.
type packWriter struct {
	f      *os.File
	h      hash.Hash
	bw     *bufio.Writer
	enc    io.WriteCloser
	offset int64
	blobs  []PackedBlob
	header []byte
}

func newPackWriter(r *Repository) (*packWriter, error) {
	dir := r.TempDir
	if fc, ok := r.be.(backend.FileCommitter); ok && dir == "" {
		dir = fc.TempDir()
	}
	f, err := os.CreateTemp(dir, ".tmp-pack-")
	if err != nil {
		return nil, fmt.Errorf("create temporary pack file: %w", err)
	}
	p := &packWriter{f: f, h: sha256.New()}
	p.bw = bufio.NewWriterSize(io.MultiWriter(f, p.h), 1<<20)
	p.enc, err = age.Encrypt(p.bw, r.restoreRecipients...)
	if err != nil {
		p.discard()
		return nil, err
	}
	return p, nil
}

func (p *packWriter) add(h BlobHandle, stored []byte, rawLen int) error {
	if _, err := p.enc.Write(stored); err != nil {
		return fmt.Errorf("write temporary pack %s: %w", p.f.Name(), err)
	}
	p.blobs = append(p.blobs, PackedBlob{BlobHandle: h, Offset: uint32(p.offset), Length: uint32(len(stored)), RawLength: uint32(rawLen)})
	p.offset += int64(len(stored))
	return nil
}

func (p *packWriter) finish() (ID, int64, error) {
	hdr := appendPackHeader(nil, p.blobs)
	hdr = appendPackTrailer(hdr, len(hdr))
	if _, err := p.enc.Write(hdr); err != nil {
		return ID{}, 0, err
	}
	if err := p.enc.Close(); err != nil {
		return ID{}, 0, err
	}
	if err := p.bw.Flush(); err != nil {
		return ID{}, 0, fmt.Errorf("write temporary pack %s: %w", p.f.Name(), err)
	}
	fi, err := p.f.Stat()
	if err != nil {
		return ID{}, 0, err
	}
	var id ID
	p.h.Sum(id[:0])
	return id, fi.Size(), nil
}

func (p *packWriter) discard() {
	if p.f != nil {
		p.f.Close()
		os.Remove(p.f.Name())
		p.f = nil
	}
}
