package repo

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// ageStream decrypts the payload of an age file front to back: the STREAM
// construction of the age specification (C2SP age, "Payload"): a 16-byte
// nonce after the header, a ChaCha20-Poly1305 key derived with
// HKDF-SHA-256(file key, salt nonce, "payload"), and 64 KiB chunks, each
// sealed with an 11-byte big-endian counter and a last-chunk flag as nonce.
//
// age.Decrypt does the same but allocates a fresh 64 KiB buffer for every
// chunk (1 GB restored = 1 GB of garbage); this reader decrypts in place
// into one buffer. The header is parsed and unwrapped by age itself
// (ExtractHeader, DecryptHeader): only the payload is decrypted here.
type ageStream struct {
	src    *bufio.Reader
	aead   cipher.AEAD
	nonce  [chacha20poly1305.NonceSize]byte
	buf    []byte // ageEncChunk bytes
	unread []byte // decrypted, not yet read, within buf
	last   bool   // the last chunk has been decrypted
	err    error  // sticky
}

const (
	ageChunk    = 64 << 10
	ageEncChunk = ageChunk + chacha20poly1305.Overhead
	ageNonce    = 16
	// ageMaxHeader bounds the header looked at in the read buffer; pack
	// headers name one or two recipients and are well under 1 KiB.
	ageMaxHeader = 64 << 10
)

// errAgeNonCanonical reports a header that does not re-encode to its own
// bytes (so the payload offset is unknown) or is longer than ageMaxHeader;
// nothing has been read then, and callers fall back to age.Decrypt.
var errAgeNonCanonical = errors.New("age header not in canonical form")

// openAgeStream reads an age header from src (whose buffer must hold at
// least ageMaxHeader bytes), unwraps the file key with identities and
// returns a reader of the plaintext. buf, if it has room for a chunk, is
// used as the chunk buffer. Errors from unwrapping are age's own (e.g.
// *age.NoIdentityMatchError).
func openAgeStream(src *bufio.Reader, identities []age.Identity, buf []byte) (*ageStream, error) {
	peek, err := src.Peek(ageMaxHeader)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(peek))
	if err != nil {
		if len(peek) == ageMaxHeader {
			// perhaps only longer than what was looked at (hundreds of
			// recipients): nothing is consumed, age.Decrypt can take over
			return nil, errAgeNonCanonical
		}
		return nil, err
	}
	if !bytes.HasPrefix(peek, hdr) {
		return nil, errAgeNonCanonical
	}
	fileKey, err := age.DecryptHeader(hdr, identities...)
	if err != nil {
		return nil, err
	}
	if _, err := src.Discard(len(hdr)); err != nil {
		return nil, err
	}
	var nonce [ageNonce]byte
	if _, err := io.ReadFull(src, nonce[:]); err != nil {
		return nil, fmt.Errorf("failed to read nonce: %w", noEOF(err))
	}
	key, err := hkdf.Key(sha256.New, fileKey, nonce[:], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	if cap(buf) < ageEncChunk {
		buf = make([]byte, ageEncChunk)
	}
	return &ageStream{src: src, aead: aead, buf: buf[:ageEncChunk]}, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Read implements io.Reader over the plaintext.
func (s *ageStream) Read(p []byte) (int, error) {
	for len(s.unread) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.last {
			// nothing may follow the last chunk
			if _, err := s.src.ReadByte(); err == nil {
				s.err = errors.New("trailing data after end of encrypted file")
			} else if err == io.EOF {
				s.err = io.EOF
			} else {
				s.err = err
			}
			return 0, s.err
		}
		if err := s.readChunk(); err != nil {
			s.err = err
			return 0, err
		}
	}
	n := copy(p, s.unread)
	s.unread = s.unread[n:]
	return n, nil
}

// readChunk reads and decrypts the next chunk into s.buf.
func (s *ageStream) readChunk() error {
	in := s.buf[:ageEncChunk]
	n, err := io.ReadFull(s.src, in)
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF // a payload ends with a marked chunk
	case err == io.ErrUnexpectedEOF:
		if n == chacha20poly1305.Overhead && !s.firstChunk() {
			return errors.New("last chunk is empty")
		}
		in = in[:n]
		s.last = true
		s.nonce[len(s.nonce)-1] = 1
	case err != nil:
		return err
	default:
		// A full chunk is the last one exactly when nothing follows it
		// (decided before decrypting: a failed in-place Open zeroes the
		// buffer, so there is no second try with the other nonce).
		if _, perr := s.src.Peek(1); perr == io.EOF {
			s.last = true
			s.nonce[len(s.nonce)-1] = 1
		} else if perr != nil {
			return perr
		}
	}
	out, err := s.aead.Open(in[:0], s.nonce[:], in, nil)
	if err != nil {
		return errors.New("failed to decrypt and authenticate payload chunk, file may be corrupted or tampered with")
	}
	if len(out) == 0 && !s.firstChunk() {
		return errors.New("last chunk is empty")
	}
	s.incNonce()
	s.unread = out
	return nil
}

// firstChunk reports whether the counter is still at zero.
func (s *ageStream) firstChunk() bool {
	for _, b := range s.nonce[:len(s.nonce)-1] {
		if b != 0 {
			return false
		}
	}
	return true
}

func (s *ageStream) incNonce() {
	for i := len(s.nonce) - 2; i >= 0; i-- {
		s.nonce[i]++
		if s.nonce[i] != 0 {
			return
		}
	}
	// 2^88 chunks: unreachable
	s.err = errors.New("age stream: chunk counter overflow")
}
