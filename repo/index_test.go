package repo

import (
	"encoding/binary"
	"math/rand"
	"slices"
	"testing"
)

// encodeIndexV1 renders format 1, as repositories written before format 2
// hold it.
func encodeIndexV1(packs []IndexPack) []byte {
	out := append([]byte{}, indexMagicV1...)
	out = binary.AppendUvarint(out, uint64(len(packs)))
	for _, p := range packs {
		out = append(out, p.ID[:]...)
		out = binary.AppendUvarint(out, uint64(p.Size))
		out = binary.AppendUvarint(out, uint64(len(p.Blobs)))
		for _, b := range p.Blobs {
			out = append(out, byte(b.Type))
			out = append(out, b.ID[:]...)
			out = binary.AppendUvarint(out, uint64(b.Offset))
			out = binary.AppendUvarint(out, uint64(b.Length))
			out = binary.AppendUvarint(out, uint64(b.RawLength))
		}
	}
	return out
}

// randomPacks makes packs like a backup's: blobs back to back, about half
// stored compressed, in 32 MiB packs.
func randomPacks(rnd *rand.Rand, packs, blobs int) []IndexPack {
	out := make([]IndexPack, packs)
	for i := range out {
		p := &out[i]
		rnd.Read(p.ID[:])
		var off uint32
		for j := 0; j < blobs; j++ {
			b := PackedBlob{BlobHandle: BlobHandle{Type: DataBlob}, Offset: off, Length: uint32(1 + rnd.Intn(1<<20))}
			rnd.Read(b.ID[:])
			b.RawLength = b.Length
			if rnd.Intn(2) == 0 {
				b.RawLength += uint32(rnd.Intn(1 << 20))
			}
			if j%7 == 3 {
				off += 16 // a gap: blobs need not be back to back
			}
			b.Offset = off
			off += b.Length
			p.Blobs = append(p.Blobs, b)
		}
		p.Size = int64(off) + 1000
	}
	return out
}

func TestIndexFormatsDecodeAlike(t *testing.T) {
	packs := randomPacks(rand.New(rand.NewSource(1)), 5, 60)
	v1, v2 := encodeIndexV1(packs), EncodeIndex(packs)
	for name, data := range map[string][]byte{"format 1": v1, "format 2": v2} {
		got, err := DecodeIndex(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.EqualFunc(got, packs, func(a, b IndexPack) bool {
			return a.ID == b.ID && a.Size == b.Size && slices.Equal(a.Blobs, b.Blobs)
		}) {
			t.Fatalf("%s decodes to other packs", name)
		}
	}
	if blobs := 5 * 60; len(v2) > len(v1)-3*blobs {
		t.Errorf("format 2 is %d bytes, format 1 %d: want at least 3 bytes a blob less", len(v2), len(v1))
	}
}

// Blobs given out of offset order are stored in offset order.
func TestEncodeIndexSortsByOffset(t *testing.T) {
	packs := randomPacks(rand.New(rand.NewSource(2)), 1, 20)
	want := slices.Clone(packs[0].Blobs)
	rand.New(rand.NewSource(3)).Shuffle(len(packs[0].Blobs), func(i, j int) {
		packs[0].Blobs[i], packs[0].Blobs[j] = packs[0].Blobs[j], packs[0].Blobs[i]
	})
	got, err := DecodeIndex(EncodeIndex(packs))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0].Blobs, want) {
		t.Fatal("shuffled blobs do not come back in offset order")
	}
}

func TestDecodeIndexRejectsOutOfRange(t *testing.T) {
	head := func() []byte {
		out := append([]byte{}, indexMagic...)
		out = append(out, 1)                   // one pack
		out = append(out, make([]byte, 32)...) // id
		out = binary.AppendUvarint(out, 1<<20)
		out = append(out, 1, byte(DataBlob)) // one blob
		return append(out, make([]byte, 32)...)
	}
	blob := func(gap int64, length uint64, rawDiff int64) []byte {
		out := binary.AppendVarint(head(), gap)
		out = binary.AppendUvarint(out, length)
		return binary.AppendVarint(out, rawDiff)
	}
	if _, err := DecodeIndex(blob(0, 10, 5)); err != nil {
		t.Fatalf("a good index: %v", err)
	}
	for name, data := range map[string][]byte{
		"negative offset":         blob(-1, 10, 0),
		"negative raw length":     blob(0, 10, -11),
		"raw length beyond 2^32":  blob(0, 10, 1<<32),
		"blob beyond its pack":    blob(1<<20, 10, 0),
		"truncated raw length":    binary.AppendUvarint(binary.AppendVarint(head(), 0), 10),
		"format 1 magic, garbage": append(append([]byte{}, indexMagicV1...), 0xff),
	} {
		if _, err := DecodeIndex(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
