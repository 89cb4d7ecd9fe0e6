package repo

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"filippo.io/age"
)

func ageSeal(t testing.TB, plain []byte, to age.Recipient) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := age.Encrypt(&out, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func ageStreamRead(sealed []byte, id age.Identity) ([]byte, error) {
	s, err := openAgeStream(bufio.NewReaderSize(bytes.NewReader(sealed), 1<<20), []age.Identity{id}, nil)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(s)
}

// The stream reader decrypts exactly what age itself decrypts, at every
// length around the 64 KiB chunk boundaries.
func TestAgeStreamMatchesAge(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, ageChunk - 1, ageChunk, ageChunk + 1, 2 * ageChunk, 2*ageChunk + 17, 5*ageChunk - 3, 1 << 20} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(rng.Uint32())
		}
		sealed := ageSeal(t, plain, id.Recipient())
		got, err := ageStreamRead(sealed, id)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		want, err := age.Decrypt(bytes.NewReader(sealed), id)
		if err != nil {
			t.Fatal(err)
		}
		wantPlain, err := io.ReadAll(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) || !bytes.Equal(wantPlain, plain) {
			t.Fatalf("%d bytes: stream reader got %d bytes, age %d, differing from the plaintext", n, len(got), len(wantPlain))
		}
	}
}

// Every kind of damage age refuses is refused: truncation anywhere, a
// flipped bit in any chunk, trailing bytes, a dropped chunk, the wrong key.
func TestAgeStreamRefusesDamage(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	plain := bytes.Repeat([]byte("shopvault "), 3*ageChunk/10+5) // 3 chunks + a bit
	sealed := ageSeal(t, plain, id.Recipient())
	hdr, err := age.ExtractHeader(bytes.NewReader(sealed))
	if err != nil {
		t.Fatal(err)
	}
	payload := len(hdr) + ageNonce

	if _, err := ageStreamRead(sealed, other); !errors.As(err, new(*age.NoIdentityMatchError)) {
		t.Errorf("wrong key: %v, want a NoIdentityMatchError", err)
	}
	for _, cut := range []int{len(sealed) - 1, len(sealed) - 16, payload + ageEncChunk, payload + ageEncChunk + 5, payload + 3, payload} {
		if _, err := ageStreamRead(sealed[:cut], id); err == nil {
			t.Errorf("truncated to %d of %d bytes: no error", cut, len(sealed))
		}
	}
	for _, at := range []int{payload - 1, payload + 10, payload + ageEncChunk + 10, len(sealed) - 1} {
		bad := bytes.Clone(sealed)
		bad[at] ^= 0x20
		if _, err := ageStreamRead(bad, id); err == nil {
			t.Errorf("bit flipped at %d: no error", at)
		}
	}
	if _, err := ageStreamRead(append(bytes.Clone(sealed), 0), id); err == nil {
		t.Error("trailing byte: no error")
	}
	dropped := append(bytes.Clone(sealed[:payload]), sealed[payload+ageEncChunk:]...)
	if _, err := ageStreamRead(dropped, id); err == nil {
		t.Error("first chunk dropped: no error")
	}
	// a chunk-aligned plaintext whose final full chunk is cut off entirely
	aligned := ageSeal(t, bytes.Repeat([]byte{7}, 2*ageChunk), id.Recipient())
	if _, err := ageStreamRead(aligned[:len(aligned)-ageEncChunk], id); err == nil {
		t.Error("chunk-aligned file missing its final chunk: no error")
	}
}

func BenchmarkAgeStream(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	plain := bytes.Repeat([]byte{1, 2, 3}, 11<<20)
	sealed := ageSeal(b, plain, id.Recipient())
	b.Run("age.Decrypt", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			r, _ := age.Decrypt(bufio.NewReaderSize(bytes.NewReader(sealed), 1<<20), id)
			_, _ = io.Copy(io.Discard, r)
		}
	})
	b.Run("ageStream", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			s, _ := openAgeStream(bufio.NewReaderSize(bytes.NewReader(sealed), 1<<20), []age.Identity{id}, nil)
			_, _ = io.Copy(io.Discard, s)
		}
	})
}

// A header longer than the part looked at (hundreds of recipients) is
// handed back untouched, so the caller's fallback to age.Decrypt reads it.
func TestAgeStreamLongHeaderFallsBack(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	recipients := []age.Recipient{id.Recipient()}
	for len(recipients) < 900 { // ~90 bytes of header each
		other, _ := age.GenerateX25519Identity()
		recipients = append(recipients, other.Recipient())
	}
	var sealed bytes.Buffer
	w, err := age.Encrypt(&sealed, recipients...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("payload"))
	w.Close()
	br := bufio.NewReaderSize(bytes.NewReader(sealed.Bytes()), 1<<20)
	if _, err := openAgeStream(br, []age.Identity{id}, nil); !errors.Is(err, errAgeNonCanonical) {
		t.Fatalf("long header: %v, want errAgeNonCanonical", err)
	}
	r, err := age.Decrypt(br, id)
	if err != nil {
		t.Fatalf("fallback after the stream reader declined: %v", err)
	}
	if got, _ := io.ReadAll(r); string(got) != "payload" {
		t.Fatalf("fallback read %q", got)
	}
}
