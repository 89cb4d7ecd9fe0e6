package repo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// codec compresses and encrypts. One per repository; safe for concurrent use.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// maxDecoded bounds a decompressed metadata file or blob (blobs are at
// most a chunk, metadata may be large; a damaged file must not make us
// allocate without bound).
const maxDecoded = 1 << 30

func newCodec() (*codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxDecoded))
	if err != nil {
		return nil, err
	}
	return &codec{enc: enc, dec: dec}, nil
}

// compress appends the compressed form of src to dst. It reports false
// when compression does not shrink the data; then the returned slice has
// dst's length (its content is unchanged), but possibly a bigger capacity
// the caller can reuse: zstd grew the buffer, and dropping it made every
// incompressible blob (product images) cost a fresh buffer of its size.
func (c *codec) compress(dst, src []byte) ([]byte, bool) {
	out := c.enc.EncodeAll(src, dst)
	if len(out)-len(dst) >= len(src) {
		return out[:len(dst)], false
	}
	return out, true
}

func (c *codec) decompress(dst, src []byte) ([]byte, error) {
	return c.dec.DecodeAll(src, dst)
}

// seal compresses plaintext and encrypts it to recipients.
func (c *codec) seal(plaintext []byte, recipients []age.Recipient) ([]byte, error) {
	var out bytes.Buffer
	w, err := age.Encrypt(&out, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(c.enc.EncodeAll(plaintext, nil)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// open decrypts and decompresses a file written by seal.
func (c *codec) open(what string, data []byte, identities []age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(data), identities...)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return nil, fmt.Errorf("%s: %w", what, ErrWrongKey)
		}
		return nil, &CorruptError{What: what, Err: err}
	}
	compressed, err := io.ReadAll(r)
	if err != nil {
		return nil, &CorruptError{What: what, Err: err}
	}
	plain, err := c.decompress(nil, compressed)
	if err != nil {
		return nil, &CorruptError{What: what, Err: err}
	}
	return plain, nil
}
