package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// FileReader streams a file's content from the repository (restore key).
// Runs of its blobs that lie in one pack are read with one ranged Load of
// up to fileReaderSpan bytes (a database stream's blobs follow each other
// in a pack, interleaved with another table's at most), and the next
// fileReaderAhead runs are fetched while the current one is read; every
// blob is decompressed and checked against its id.
type FileReader struct {
	ctx     context.Context
	r       *Repository
	content []ID   // blobs not yet in a run
	buf     []byte // the current blob's plaintext
	cur     []byte // its unread part

	fileRun                // the run being delivered
	spares  [][]byte       // free run buffers
	ahead   []chan fileRun // the next runs, being fetched, in order
}

// fileRun is a run of blobs of one pack with the plaintext of their chunks.
type fileRun struct {
	pack  ID
	run   []PackedBlob // blobs not yet delivered
	plain []byte       // plaintext of the run's chunks (the Load buffer)
	base  int64        // plaintext offset of plain[0] in the pack
	err   error
}

// fileReaderAhead is how many runs are fetched ahead of the one being read
// (each a round trip or two on a remote repository).
const fileReaderAhead = 3

// fileReaderSpan bounds the pack bytes one ranged read covers.
const fileReaderSpan = 2 << 20

// NewFileReader returns a reader of the content of n (a file node).
func (r *Repository) NewFileReader(ctx context.Context, n *Node) (*FileReader, error) {
	if n.Type != NodeFile {
		return nil, errors.New(n.Name + " is not a regular file")
	}
	if !r.canRead {
		return nil, ErrNeedRestoreKey
	}
	return &FileReader{ctx: ctx, r: r, content: n.Content}, nil
}

// Read implements io.Reader.
func (f *FileReader) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if len(f.run) == 0 && len(f.content) == 0 && len(f.ahead) == 0 {
			return 0, io.EOF
		}
		data, err := f.next()
		if err != nil {
			return 0, err
		}
		f.buf, f.cur = data, data
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

// next returns the plaintext of the next blob.
func (f *FileReader) next() ([]byte, error) {
	if len(f.run) == 0 {
		if f.plain != nil {
			f.spares = append(f.spares, f.plain) // the run just delivered is done with
			f.plain = nil
		}
		if err := f.fill(); err != nil {
			return nil, err
		}
		if len(f.ahead) == 0 {
			// no run (header not readable this way): one blob through age
			id := f.content[0]
			f.content = f.content[1:]
			return f.r.LoadBlob(f.ctx, BlobHandle{Type: DataBlob, ID: id}, f.buf)
		}
		fr := <-f.ahead[0]
		f.ahead = f.ahead[1:]
		if fr.err != nil {
			return nil, fr.err
		}
		f.fileRun = fr
		if err := f.fill(); err != nil {
			return nil, err
		}
	}
	b := f.run[0]
	f.run = f.run[1:]
	at := int64(b.Offset) - f.base
	return f.r.decodeBlob(f.pack, b, f.plain[at:at+int64(b.Length)], f.buf)
}

// fill starts fetching runs until fileReaderAhead are on their way. It
// stops at a blob that needs LoadBlob (then f.content starts with it).
func (f *FileReader) fill() error {
	for len(f.ahead) < fileReaderAhead && len(f.content) > 0 {
		pack, run, size, n, err := f.r.planRun(f.content)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		f.content = f.content[n:]
		var buf []byte
		if k := len(f.spares); k > 0 {
			buf, f.spares = f.spares[k-1], f.spares[:k-1]
		}
		ch := make(chan fileRun, 1)
		go func() { ch <- f.r.fetchRun(f.ctx, pack, size, run, buf) }()
		f.ahead = append(f.ahead, ch)
	}
	return nil
}

// planRun finds the run of blobs that starts at content[0]: the blobs after
// it in the same pack, at increasing offsets, within fileReaderSpan. It
// returns how many blobs of content the run takes; 0 means: read content[0]
// with LoadBlob (pack size unknown).
func (r *Repository) planRun(content []ID) (ID, []PackedBlob, int64, int, error) {
	h := BlobHandle{Type: DataBlob, ID: content[0]}
	e, ok := r.idx.Lookup(h)
	if !ok {
		return ID{}, nil, 0, 0, fmt.Errorf("blob %s is not in the index (run 'shopvault check')", h)
	}
	r.idx.mu.RLock()
	size := r.idx.packSize[e.Pack]
	r.idx.mu.RUnlock()
	if size <= 0 {
		return ID{}, nil, 0, 0, nil
	}
	run := []PackedBlob{e.PackedBlob}
	start, end := int64(e.Offset), int64(e.Offset)+int64(e.Length)
	n := 1
	for ; n < len(content); n++ {
		e2, ok := r.idx.Lookup(BlobHandle{Type: DataBlob, ID: content[n]})
		if !ok || e2.Pack != e.Pack || int64(e2.Offset) < end {
			break
		}
		e2end := int64(e2.Offset) + int64(e2.Length)
		if e2end-start > fileReaderSpan {
			break
		}
		run = append(run, e2.PackedBlob)
		end = e2end
	}
	return e.Pack, run, size, n, nil
}

// fetchRun reads the chunks holding run (blobs of pack, size bytes) into
// buf. A pack whose header cannot be read this way is read through age's
// reader, blob by blob, into one buffer laid out the same.
func (r *Repository) fetchRun(ctx context.Context, pack ID, size int64, run []PackedBlob, buf []byte) fileRun {
	start := int64(run[0].Offset)
	last := run[len(run)-1]
	end := int64(last.Offset) + int64(last.Length)
	pp, err := r.packPayload(ctx, pack, size)
	if errors.Is(err, errAgeNonCanonical) {
		op, err := r.packCache.get(ctx, pack, size)
		if err != nil {
			return fileRun{err: err}
		}
		if cap(buf) < int(end-start) {
			buf = make([]byte, end-start)
		}
		buf = buf[:end-start]
		if _, err := op.ra.ReadAt(buf, start); err != nil {
			r.packCache.drop(pack)
			return fileRun{err: r.packErr(pack, err)}
		}
		return fileRun{pack: pack, run: run, plain: buf, base: start}
	}
	if err != nil {
		return fileRun{err: err}
	}
	plain, base, err := r.readPlain(ctx, pack, pp, start, end, buf)
	if err != nil {
		return fileRun{err: err}
	}
	return fileRun{pack: pack, run: run, plain: plain, base: base}
}

// Close implements io.Closer. It waits for the runs being fetched.
func (f *FileReader) Close() error {
	for _, ch := range f.ahead {
		<-ch
	}
	f.ahead = nil
	return nil
}
