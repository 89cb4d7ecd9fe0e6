package repo

import (
	"context"
	"errors"
	"io"
)

// FileReader streams a file's content from the repository, one blob at a
// time (restore key). Memory is one blob.
type FileReader struct {
	ctx     context.Context
	r       *Repository
	content []ID
	buf     []byte
	cur     []byte
}

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
		if len(f.content) == 0 {
			return 0, io.EOF
		}
		data, err := f.r.LoadBlob(f.ctx, BlobHandle{Type: DataBlob, ID: f.content[0]}, f.buf)
		if err != nil {
			return 0, err
		}
		f.content = f.content[1:]
		f.buf, f.cur = data, data
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

// Close implements io.Closer.
func (f *FileReader) Close() error { return nil }
