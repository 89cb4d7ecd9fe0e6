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
// in a pack, interleaved with another table's at most); every blob is
// decompressed and checked against its id. Memory is one run plus one
// blob.
type FileReader struct {
	ctx     context.Context
	r       *Repository
	content []ID
	buf     []byte // the current blob's plaintext
	cur     []byte // its unread part

	pack  ID
	run   []PackedBlob // blobs of the current run not yet delivered
	plain []byte       // plaintext of the run's chunks (the Load buffer)
	base  int64        // plaintext offset of plain[0] in the pack
}

// fileReaderSpan bounds the pack bytes one ranged read covers.
const fileReaderSpan = 4 << 20

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
		if len(f.run) == 0 && len(f.content) == 0 {
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
		if err := f.startRun(); err != nil {
			return nil, err
		}
		if len(f.run) == 0 {
			// no run (header not readable this way): one blob through age
			id := f.content[0]
			f.content = f.content[1:]
			return f.r.LoadBlob(f.ctx, BlobHandle{Type: DataBlob, ID: id}, f.buf)
		}
	}
	b := f.run[0]
	f.run = f.run[1:]
	at := int64(b.Offset) - f.base
	return f.r.decodeBlob(f.pack, b, f.plain[at:at+int64(b.Length)], f.buf)
}

// startRun reads the run of blobs that starts at f.content[0]: the blobs
// after it in the same pack, at increasing offsets, within fileReaderSpan.
func (f *FileReader) startRun() error {
	r := f.r
	h := BlobHandle{Type: DataBlob, ID: f.content[0]}
	e, ok := r.idx.Lookup(h)
	if !ok {
		return fmt.Errorf("blob %s is not in the index (run 'shopvault check')", h)
	}
	r.idx.mu.RLock()
	size := r.idx.packSize[e.Pack]
	r.idx.mu.RUnlock()
	if size <= 0 {
		return nil // size unknown: LoadBlob finds it
	}
	pp, err := r.packPayload(f.ctx, e.Pack, size)
	if errors.Is(err, errAgeNonCanonical) {
		return nil
	}
	if err != nil {
		return err
	}
	run := append(f.run[:0], e.PackedBlob)
	start, end := int64(e.Offset), int64(e.Offset)+int64(e.Length)
	n := 1
	for ; n < len(f.content); n++ {
		e2, ok := r.idx.Lookup(BlobHandle{Type: DataBlob, ID: f.content[n]})
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
	plain, base, err := r.readPlain(f.ctx, e.Pack, pp, start, end, f.plain)
	if err != nil {
		return err
	}
	f.content = f.content[n:]
	f.pack, f.run, f.plain, f.base = e.Pack, run, plain, base
	return nil
}

// Close implements io.Closer.
func (f *FileReader) Close() error { return nil }
