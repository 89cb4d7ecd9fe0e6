package repo

import (
	"bufio"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"

	"github.com/shopvault/shopvault/backend"
)

// backendReaderAt reads a stored file through ranged Loads, with a read-ahead
// window that grows while the reads are sequential: age's reader asks for
// the header in small pieces and for the payload one 64 KiB chunk at a time,
// and a remote backend pays round trips for each Load (a database stream
// read blob by blob made thousands of them).
type backendReaderAt struct {
	be   backend.Backend
	h    backend.Handle
	size int64 // of the stored file

	mu     sync.Mutex
	win    []byte // bytes of the file from winOff
	winOff int64
	next   int64 // where the last read ended (-1: none yet)
	grow   int   // the window of the next sequential miss
}

const (
	readAheadMin = 64 << 10
	readAheadMax = 2 << 20 // per open pack (packCache keeps 16)
	// readWhole: files up to this size are read whole at the first miss;
	// bigger ones only where asked (restoring one file must not fetch its
	// whole pack).
	readWhole = 512 << 10
)

func newBackendReaderAt(be backend.Backend, h backend.Handle, size int64) *backendReaderAt {
	return &backendReaderAt{be: be, h: h, size: size, next: -1, grow: readAheadMin}
}

func (b *backendReaderAt) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", b.h, off)
	}
	if off >= b.winOff && off+int64(len(p)) <= b.winOff+int64(len(b.win)) {
		n := copy(p, b.win[off-b.winOff:])
		b.next = off + int64(n)
		return n, nil
	}
	from, want := off, max(len(p), readAheadMin)
	switch {
	case b.size <= readWhole && off+int64(len(p)) <= b.size:
		// A small file: all of it, once.
		from, want = 0, int(b.size)
	case off == b.next:
		// Sequential: read further ahead each time.
		want = max(len(p), b.grow)
		b.grow = min(2*b.grow, readAheadMax)
	default:
		b.grow = 4 * readAheadMin
	}
	if rest := b.size - from; int64(want) > rest {
		want = int(max(rest, 0))
	}
	if from+int64(want) < off+int64(len(p)) {
		// Past the end: read exactly what was asked (the Load reports it).
		from, want = off, len(p)
	}
	if cap(b.win) < want {
		b.win = make([]byte, want)
	}
	buf := b.win[:want]
	b.win, b.winOff = nil, 0
	err := b.be.Load(context.Background(), b.h, from, int64(want), func(r io.Reader) error {
		_, err := io.ReadFull(r, buf)
		return err
	})
	if err != nil {
		b.win = buf[:0]
		return 0, err
	}
	b.win, b.winOff = buf, from
	n := copy(p, buf[off-from:])
	b.next = off + int64(n)
	return n, nil
}

type openPack struct {
	ra   io.ReaderAt
	size int64
}

// packCache keeps recently opened (decrypting) pack readers, so loading
// many blobs of one pack costs one key unwrap.
type packCache struct {
	r     *Repository
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[ID]*list.Element
}

type cacheItem struct {
	id ID
	op *openPack
}

func newPackCache(r *Repository, max int) *packCache {
	return &packCache{r: r, max: max, ll: list.New(), items: map[ID]*list.Element{}}
}

func (c *packCache) get(ctx context.Context, pack ID, size int64) (*openPack, error) {
	c.mu.Lock()
	if el, ok := c.items[pack]; ok {
		c.ll.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*cacheItem).op, nil
	}
	c.mu.Unlock()
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	if size <= 0 {
		fi, err := c.r.be.Stat(ctx, h)
		if err != nil {
			return nil, err
		}
		size = fi.Size
	}
	ra, plainSize, err := age.DecryptReaderAt(newBackendReaderAt(c.r.be, h, size), size, c.r.identities...)
	if err != nil {
		return nil, c.r.packErr(pack, err)
	}
	op := &openPack{ra: ra, size: plainSize}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items[pack] = c.ll.PushFront(&cacheItem{id: pack, op: op})
	for c.ll.Len() > c.max {
		el := c.ll.Back()
		c.ll.Remove(el)
		delete(c.items, el.Value.(*cacheItem).id)
	}
	return op, nil
}

func (c *packCache) drop(pack ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[pack]; ok {
		c.ll.Remove(el)
		delete(c.items, pack)
	}
}

func (r *Repository) packErr(pack ID, err error) error {
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		if !r.canRead {
			return ErrNeedRestoreKey
		}
		return fmt.Errorf("pack %s: %w", pack.Short(), ErrWrongKey)
	}
	if errors.Is(err, ErrNeedRestoreKey) || errors.Is(err, context.Canceled) || backend.IsNotExist(err) {
		return fmt.Errorf("pack %s: %w", pack.Short(), err)
	}
	return &CorruptError{What: "pack data/" + pack.String(), Err: err}
}

// LoadBlob loads, decompresses and verifies one blob. buf is reused for
// the result when large enough.
func (r *Repository) LoadBlob(ctx context.Context, h BlobHandle, buf []byte) ([]byte, error) {
	if !r.canRead {
		return nil, ErrNeedRestoreKey
	}
	e, ok := r.idx.Lookup(h)
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the index (run 'shopvault check')", h)
	}
	r.idx.mu.RLock()
	size := r.idx.packSize[e.Pack]
	r.idx.mu.RUnlock()
	op, err := r.packCache.get(ctx, e.Pack, size)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, e.Length)
	if _, err := op.ra.ReadAt(raw, int64(e.Offset)); err != nil {
		r.packCache.drop(e.Pack)
		return nil, r.packErr(e.Pack, err)
	}
	return r.decodeBlob(e.Pack, e.PackedBlob, raw, buf)
}

func (r *Repository) decodeBlob(pack ID, b PackedBlob, stored, buf []byte) ([]byte, error) {
	var data []byte
	if b.Compressed() {
		if cap(buf) < int(b.RawLength) {
			buf = make([]byte, 0, b.RawLength)
		}
		var err error
		data, err = r.codec.decompress(buf[:0], stored)
		if err != nil {
			return nil, &CorruptError{What: fmt.Sprintf("blob %s in pack %s", b.BlobHandle, pack.Short()), Err: err}
		}
	} else {
		data = append(buf[:0], stored...)
	}
	if len(data) != int(b.RawLength) || r.BlobID(data) != b.ID {
		return nil, &CorruptError{What: fmt.Sprintf("blob %s in pack %s", b.BlobHandle, pack.Short()), Err: errors.New("content does not match its id")}
	}
	return data, nil
}

// StreamPack reads one pack once, front to back, and calls fn for each of
// blobs (which must belong to the pack, sorted by offset) with its
// verified plaintext. data is only valid during the call.
func (r *Repository) StreamPack(ctx context.Context, pack ID, blobs []PackedBlob, fn func(b PackedBlob, data []byte) error) error {
	return r.streamPack(ctx, pack, blobs, true, fn)
}

// StreamPackUnhashed is StreamPack without comparing each blob's plaintext
// with its id, for a caller that hashes every byte it delivers anyway (a
// verified restore re-reads and hashes what it wrote). The pack is still
// authenticated chunk by chunk by age, and the blobs decompressed and
// length-checked.
func (r *Repository) StreamPackUnhashed(ctx context.Context, pack ID, blobs []PackedBlob, fn func(b PackedBlob, data []byte) error) error {
	return r.streamPack(ctx, pack, blobs, false, fn)
}

func (r *Repository) streamPack(ctx context.Context, pack ID, blobs []PackedBlob, hash bool, fn func(b PackedBlob, data []byte) error) error {
	if !r.canRead {
		return ErrNeedRestoreKey
	}
	if len(blobs) == 0 {
		return nil
	}
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	small := r.bufs.small()
	defer r.bufs.putSmall(small)
	slots := remoteBigBlobSlots
	if _, local := r.be.(backend.FileCommitter); local {
		slots = localBigBlobSlots
	}
	// The whole pack, as a range of its indexed size where the index has
	// one: over SFTP the reads then end with the last DATA instead of EOF
	// statuses, which sshd holds back (Nagle) for an acknowledgement the
	// client's kernel delays.
	err := r.be.Load(ctx, h, 0, r.idx.PackSize(pack), func(rd io.Reader) error {
		br := small.reader
		br.Reset(rd)
		defer br.Reset(nil)
		var dr io.Reader
		as, err := openAgeStream(br, r.identities, small.chunk)
		switch {
		case err == nil:
			small.chunk, dr = as.buf, as
		case errors.Is(err, errAgeNonCanonical):
			dr, err = age.Decrypt(br, r.identities...)
		}
		if err != nil {
			return r.packErr(pack, err)
		}
		var pos int64
		for _, b := range blobs {
			if int64(b.Offset) < pos {
				return fmt.Errorf("stream pack %s: blobs not sorted by offset", pack.Short())
			}
			if _, err := io.CopyN(io.Discard, dr, int64(b.Offset)-pos); err != nil {
				return r.packErr(pack, err)
			}
			pos = int64(b.Offset) + int64(b.Length)
			bb := small
			if max(int(b.Length), int(b.RawLength)) > smallBlob {
				if bb, err = r.bufs.big(ctx, slots); err != nil {
					return err
				}
			}
			err := r.streamBlob(pack, b, dr, bb, hash, fn)
			if bb != small {
				r.bufs.putBig(bb)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// streamBlob reads blob b from dr (positioned at it) into bb's buffers,
// decodes it and calls fn.
func (r *Repository) streamBlob(pack ID, b PackedBlob, dr io.Reader, bb *blobBufs, hash bool, fn func(b PackedBlob, data []byte) error) error {
	if cap(bb.stored) < int(b.Length) {
		bb.stored = make([]byte, b.Length)
	}
	stored := bb.stored[:b.Length]
	if _, err := io.ReadFull(dr, stored); err != nil {
		return r.packErr(pack, err)
	}
	data := stored // stored raw: used in place, no copy
	if b.Compressed() {
		if cap(bb.plain) < int(b.RawLength) {
			bb.plain = make([]byte, 0, b.RawLength)
		}
		var err error
		if data, err = r.codec.decompress(bb.plain[:0], stored); err != nil {
			return &CorruptError{What: fmt.Sprintf("blob %s in pack %s", b.BlobHandle, pack.Short()), Err: err}
		}
		bb.plain = data[:0]
	}
	if len(data) != int(b.RawLength) || (hash && r.BlobID(data) != b.ID) {
		return &CorruptError{What: fmt.Sprintf("blob %s in pack %s", b.BlobHandle, pack.Short()), Err: errors.New("content does not match its id")}
	}
	return fn(b, data)
}

// Blobs up to smallBlob bytes are streamed through per-stream buffers;
// bigger ones (file chunks reach 8 MiB) borrow one of a few shared buffer
// pairs, so that parallel streams do not each grow and keep 16 MiB. A
// local repository needs one (a big blob is read, decoded and written in
// milliseconds; measured on the benchmark shop: restore RSS 121-139 ->
// 111-117 MB at the same speed); a remote one holds the slot while the
// blob crosses the network, so it gets remoteBigBlobSlots.
const (
	smallBlob          = 1 << 20
	localBigBlobSlots  = 1
	remoteBigBlobSlots = 2
	// streamReadBuf is a stream's read buffer: big enough for a few age
	// chunks per read from the backend (an SFTP backend reads ahead in
	// 1 MiB pieces itself).
	streamReadBuf = 256 << 10
)

// blobBufs are the buffers one blob is decoded with.
type blobBufs struct {
	stored, plain []byte
	reader        *bufio.Reader // small buffers only: the pack's read buffer
	chunk         []byte        // small buffers only: the age chunk buffer
}

// streamBuffers hands out StreamPack's buffers: pooled small ones, and a
// fixed number of big ones (created on first use).
type streamBuffers struct {
	pool sync.Pool // of *blobBufs
	once sync.Once
	bigs chan *blobBufs
}

func (p *streamBuffers) small() *blobBufs {
	if bb, ok := p.pool.Get().(*blobBufs); ok {
		return bb
	}
	return &blobBufs{reader: bufio.NewReaderSize(nil, streamReadBuf)}
}

func (p *streamBuffers) putSmall(bb *blobBufs) {
	if cap(bb.stored) > smallBlob || cap(bb.plain) > smallBlob {
		bb.stored, bb.plain = nil, nil
	}
	p.pool.Put(bb)
}

func (p *streamBuffers) big(ctx context.Context, slots int) (*blobBufs, error) {
	p.once.Do(func() {
		p.bigs = make(chan *blobBufs, slots)
		for range slots {
			p.bigs <- &blobBufs{}
		}
	})
	select {
	case bb := <-p.bigs:
		return bb, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *streamBuffers) putBig(bb *blobBufs) { p.bigs <- bb }

// ListPack decrypts a pack's header (restore key) and returns its blobs.
func (r *Repository) ListPack(ctx context.Context, pack ID, size int64) ([]PackedBlob, error) {
	if !r.canRead {
		return nil, ErrNeedRestoreKey
	}
	op, err := r.packCache.get(ctx, pack, size)
	if err != nil {
		return nil, err
	}
	blobs, err := readPackHeader(op.ra, op.size)
	if err != nil {
		r.packCache.drop(pack)
		return nil, r.packErr(pack, err)
	}
	return blobs, nil
}
