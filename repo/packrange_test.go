package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"filippo.io/age"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/mem"
)

// readPlain returns exactly age's plaintext for every range, at every chunk
// boundary and for payloads that end on one (the last chunk full), and
// refuses damage anywhere in the chunks it reads.
func TestReadPlainMatchesAge(t *testing.T) {
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, ageChunk - 1, ageChunk, ageChunk + 1, 2 * ageChunk, 3*ageChunk + 5, 5*ageChunk - 7} {
		plain := make([]byte, size)
		rnd := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range plain {
			plain[i] = byte(rnd.Uint32())
		}
		sealed := ageSeal(t, plain, id.Recipient())
		be := mem.New()
		var pack ID
		pack[0] = byte(size)
		h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
		if err := be.Save(ctx, h, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
			t.Fatal(err)
		}
		r := &Repository{be: be, identities: []age.Identity{id}, canRead: true}
		p, err := r.packPayload(ctx, pack, int64(len(sealed)))
		if err != nil {
			t.Fatal(err)
		}
		ranges := [][2]int{{0, size}, {0, 1}, {size - 1, size}}
		for range 30 {
			a := rnd.IntN(size)
			ranges = append(ranges, [2]int{a, a + 1 + rnd.IntN(size-a)})
		}
		for _, rg := range ranges {
			got, base, err := r.readPlain(ctx, pack, p, int64(rg[0]), int64(rg[1]), nil)
			if err != nil {
				t.Fatalf("size %d range %v: %v", size, rg, err)
			}
			lo, hi := rg[0]-int(base), rg[1]-int(base)
			if base%ageChunk != 0 || lo < 0 || hi > len(got) || !bytes.Equal(got[lo:hi], plain[rg[0]:rg[1]]) {
				t.Fatalf("size %d range %v: wrong plaintext (base %d, %d bytes)", size, rg, base, len(got))
			}
		}
		if _, _, err := r.readPlain(ctx, pack, p, 0, int64(size)+ageChunk, nil); err == nil {
			t.Fatalf("size %d: a range past the end read without an error", size)
		}
		// one flipped bit in the payload, a truncated pack: refused
		for _, bad := range [][]byte{
			flip(sealed, int(p.off)+rnd.IntN(len(sealed)-int(p.off))),
			sealed[:len(sealed)-1],
		} {
			if err := be.Save(ctx, h, bytes.NewReader(bad), int64(len(bad))); err != nil {
				t.Fatal(err)
			}
			q := &packPayload{aead: p.aead, off: p.off, size: int64(len(sealed))}
			_, _, err := r.readPlain(ctx, pack, q, 0, int64(size), nil)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("size %d: damaged pack read with %v, want a CorruptError", size, err)
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

// A pack whose header is longer than the ranged reader looks at (hundreds
// of recipients) is still read by FileReader's runs, through age's reader,
// byte for byte.
func TestFetchRunLongHeaderFallsBack(t *testing.T) {
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	recipients := []age.Recipient{id.Recipient()}
	for len(recipients) < 900 { // ~90 bytes of header each: beyond ageMaxHeader
		other, _ := age.GenerateX25519Identity()
		recipients = append(recipients, other.Recipient())
	}
	plain := make([]byte, 3*ageChunk+100)
	rnd := rand.New(rand.NewPCG(9, 9))
	for i := range plain {
		plain[i] = byte(rnd.Uint32())
	}
	var sealed bytes.Buffer
	w, err := age.Encrypt(&sealed, recipients...)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	be := mem.New()
	var pack ID
	pack[0] = 0xaa
	h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
	if err := be.Save(ctx, h, bytes.NewReader(sealed.Bytes()), int64(sealed.Len())); err != nil {
		t.Fatal(err)
	}
	r := &Repository{be: be, identities: []age.Identity{id}, canRead: true}
	r.packCache = newPackCache(r, 4)
	if _, err := r.packPayload(ctx, pack, int64(sealed.Len())); !errors.Is(err, errAgeNonCanonical) {
		t.Fatalf("long header: %v, want errAgeNonCanonical", err)
	}
	run := []PackedBlob{{Offset: 10, Length: 70000}, {Offset: 80000, Length: 100000}}
	fr := r.fetchRun(ctx, pack, int64(sealed.Len()), run, nil)
	if fr.err != nil {
		t.Fatal(fr.err)
	}
	for _, b := range run {
		at := int64(b.Offset) - fr.base
		if !bytes.Equal(fr.plain[at:at+int64(b.Length)], plain[b.Offset:b.Offset+b.Length]) {
			t.Fatalf("blob at %d read wrong through the fallback", b.Offset)
		}
	}
}
