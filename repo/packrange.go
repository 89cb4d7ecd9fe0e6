package repo

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/shopvault/shopvault/backend"
)

// Reading a range of a pack's plaintext in one ranged Load.
//
// age.DecryptReaderAt reads one 64 KiB chunk per ReadAt, and its reader
// keeps only the last chunk: a file read blob by blob (a database stream)
// cost a Load per chunk, and two tables stored interleaved in one pack made
// it read the same chunks again and again. Here the header of a pack is
// unwrapped once (age.ExtractHeader, DecryptHeader) and any run of chunks is
// then loaded with one ranged Load and opened in place: STREAM chunks are
// sealed with their index as nonce, so each is authenticated on its own,
// and the last one carries the last-chunk flag, so a truncated pack fails.

// packPayload is what decrypting any chunk of a pack needs.
type packPayload struct {
	aead cipher.AEAD
	off  int64 // where the payload (the first chunk) starts
	size int64 // of the whole pack file
}

// chunks is the number of payload chunks.
func (p *packPayload) chunks() int64 {
	n := p.size - p.off
	return (n + ageEncChunk - 1) / ageEncChunk
}

// payloadCache keeps the unwrapped payload keys of recently read packs.
type payloadCache struct {
	mu sync.Mutex
	m  map[ID]*packPayload
}

const payloadCacheMax = 256

// packPayload returns the payload key of pack (size bytes), unwrapping its
// header on first use. errAgeNonCanonical means the header cannot be
// located this way (callers use age's reader instead).
func (r *Repository) packPayload(ctx context.Context, pack ID, size int64) (*packPayload, error) {
	c := &r.payloads
	c.mu.Lock()
	p := c.m[pack]
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	n := min(size, ageMaxHeader+ageNonce)
	head := make([]byte, n)
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	if err := r.be.Load(ctx, h, 0, n, func(rd io.Reader) error {
		_, err := io.ReadFull(rd, head)
		return err
	}); err != nil {
		return nil, r.packErr(pack, err)
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(head))
	if err != nil || !bytes.HasPrefix(head, hdr) || int64(len(hdr)+ageNonce) > n {
		return nil, errAgeNonCanonical
	}
	fileKey, err := age.DecryptHeader(hdr, r.identities...)
	if err != nil {
		return nil, r.packErr(pack, err)
	}
	key, err := hkdf.Key(sha256.New, fileKey, head[len(hdr):len(hdr)+ageNonce], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	p = &packPayload{aead: aead, off: int64(len(hdr) + ageNonce), size: size}
	if p.off >= size {
		return nil, r.packErr(pack, errors.New("pack has no payload"))
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= payloadCacheMax {
		c.m = map[ID]*packPayload{}
	}
	c.m[pack] = p
	c.mu.Unlock()
	return p, nil
}

// readPlain loads and decrypts the chunks holding plaintext bytes [a, b)
// of pack into buf (grown as needed) and returns the plaintext of those
// chunks and the plaintext offset it starts at.
func (r *Repository) readPlain(ctx context.Context, pack ID, p *packPayload, a, b int64, buf []byte) ([]byte, int64, error) {
	first, last := a/ageChunk, (b-1)/ageChunk
	if last >= p.chunks() {
		return nil, 0, r.packErr(pack, fmt.Errorf("plaintext range %d-%d beyond the pack's %d chunks: %w", a, b, p.chunks(), io.ErrUnexpectedEOF))
	}
	from := p.off + first*ageEncChunk
	to := min(p.off+(last+1)*ageEncChunk, p.size)
	n := int(to - from)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	if err := r.be.Load(ctx, h, from, int64(n), func(rd io.Reader) error {
		_, err := io.ReadFull(rd, buf)
		return err
	}); err != nil {
		return nil, 0, r.packErr(pack, err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	out := buf[:0]
	for k := first; k <= last; k++ {
		in := buf[(k-first)*ageEncChunk : min((k-first+1)*ageEncChunk, int64(n))]
		// the 11-byte big-endian counter, then the last-chunk flag
		for i, v := 0, uint64(k); i < 8; i++ {
			nonce[10-i] = byte(v >> (8 * i))
		}
		nonce[11] = 0
		if k == p.chunks()-1 {
			nonce[11] = 1
		}
		// Chunks decrypt in place, each one to 16 bytes before where it
		// was read, so the plaintext ends up contiguous at the front.
		plain, err := p.aead.Open(in[:0], nonce[:], in, nil)
		if err != nil {
			return nil, 0, r.packErr(pack, fmt.Errorf("chunk %d: failed to decrypt and authenticate, file may be corrupted or tampered with", k))
		}
		out = append(out, plain...)
	}
	return out, first * ageChunk, nil
}
