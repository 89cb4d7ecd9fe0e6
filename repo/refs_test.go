package repo

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"slices"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/mem"
)

// legacyRefs renders a full refs list in format 1 (whole handles), as
// repositories written before format 3 hold them.
func legacyRefs(hs []BlobHandle) []byte {
	return appendLegacyHandles(append([]byte{}, refsMagicV1...), sortedHandles(hs))
}

func legacyDelta(parent ID, depth int, added, removed []BlobHandle) []byte {
	out := append(append([]byte{}, refsDeltaMagicV1...), parent[:]...)
	out = binary.AppendUvarint(out, uint64(depth))
	out = appendLegacyHandles(out, sortedHandles(added))
	return appendLegacyHandles(out, sortedHandles(removed))
}

func appendLegacyHandles(out []byte, hs []BlobHandle) []byte {
	out = binary.AppendUvarint(out, uint64(len(hs)))
	for _, h := range hs {
		out = append(out, byte(h.Type))
		out = append(out, h.ID[:]...)
	}
	return out
}

func sortedHandles(hs []BlobHandle) []BlobHandle {
	hs = slices.Clone(hs)
	slices.SortFunc(hs, compareHandles)
	return slices.Compact(hs)
}

func openRefsRepo(t *testing.T) *Repository {
	t.Helper()
	be := mem.New()
	_, restore, err := Init(t.Context(), be, InitOptions{SingleKey: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), be, restore)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomHandles(rnd *rand.Rand, n int) []BlobHandle {
	out := make([]BlobHandle, n)
	for i := range out {
		out[i].Type = DataBlob
		if rnd.Intn(5) == 0 {
			out[i].Type = TreeBlob
		}
		rnd.Read(out[i].ID[:])
	}
	return out
}

// indexHandles records hs as stored in one (fictitious) pack, so LoadRefs can
// resolve them.
func indexHandles(r *Repository, hs []BlobHandle) {
	var pack ID
	rand.New(rand.NewSource(int64(len(hs)))).Read(pack[:])
	blobs := make([]PackedBlob, len(hs))
	for i, h := range hs {
		blobs[i] = PackedBlob{BlobHandle: h, Offset: uint32(i), Length: 1, RawLength: 1}
	}
	r.idx.addPack(pack, int64(len(hs)), blobs)
}

func refsFileOf(t *testing.T, r *Repository, id ID) *refsFile {
	t.Helper()
	f, err := r.loadRefsFile(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A chain that starts in the old formats (whole handles) and goes on in the
// new one (id prefixes) loads to exactly the handles each snapshot saved.
func TestRefsChainAcrossFormats(t *testing.T) {
	r := openRefsRepo(t)
	rnd := rand.New(rand.NewSource(1))
	cur := randomHandles(rnd, 300)
	all := slices.Clone(cur)
	// night 0 and 1 written by an older shopvault
	oldFull, err := r.SaveMeta(t.Context(), backend.RefsFile, legacyRefs(cur))
	if err != nil {
		t.Fatal(err)
	}
	added := randomHandles(rnd, 5)
	removed := slices.Clone(cur[:4])
	next := append(slices.Clone(cur[4:]), added...)
	all = append(all, added...)
	oldDelta, err := r.SaveMeta(t.Context(), backend.RefsFile, legacyDelta(oldFull, 1, added, removed))
	if err != nil {
		t.Fatal(err)
	}
	want := map[ID][]BlobHandle{oldFull: cur, oldDelta: next}
	cur, parent := next, oldDelta
	// nights 2..MaxRefsDepth+3 by this one: deltas, then a cut to a full list
	sawCut := false
	for night := 2; night < MaxRefsDepth+4; night++ {
		added := randomHandles(rnd, 3)
		next := append(slices.Clone(cur[2:]), added...)
		all = append(all, added...)
		id, err := r.SaveRefs(t.Context(), next, parent)
		if err != nil {
			t.Fatal(err)
		}
		f := refsFileOf(t, r, id)
		if f.parent.IsNull() {
			sawCut = true
		} else if f.parent != parent || f.depth > MaxRefsDepth {
			t.Fatalf("night %d: delta on %s at depth %d, want on %s at most %d", night, f.parent.Short(), f.depth, parent.Short(), MaxRefsDepth)
		}
		want[id] = next
		cur, parent = next, id
	}
	if !sawCut {
		t.Errorf("no full list within %d nights: chains must be cut at MaxRefsDepth", MaxRefsDepth+4)
	}
	indexHandles(r, all)
	for id, hs := range want {
		got, err := r.LoadRefs(t.Context(), id)
		if err != nil {
			t.Fatalf("refs %s: %v", id.Short(), err)
		}
		if w := sortedHandles(hs); !slices.Equal(got, w) {
			t.Fatalf("refs %s: %d handles loaded, want %d", id.Short(), len(got), len(w))
		}
	}
}

// The new format costs 8 bytes a blob (plus a few), a quarter of format 1.
func TestRefsListIsDense(t *testing.T) {
	hs := randomHandles(rand.New(rand.NewSource(2)), 10000)
	n, old := len(encodeRefs(hs)), len(legacyRefs(hs))
	if n > len(refsMagic)+2*binary.MaxVarintLen64+8*len(hs) {
		t.Fatalf("%d handles encode to %d bytes, want at most 8 a blob", len(hs), n)
	}
	if n*4 > old+64 {
		t.Fatalf("new list %d bytes, old %d: want about a quarter", n, old)
	}
}

// A listed blob missing from the index comes back as a handle that is not
// in the index (so check counts it), and a blob sharing a listed blob's
// prefix is returned too (prune keeps both, never too few).
func TestLoadRefsResolvesPrefixes(t *testing.T) {
	r := openRefsRepo(t)
	rnd := rand.New(rand.NewSource(3))
	hs := randomHandles(rnd, 20)
	lost := hs[0]
	twin := hs[1]
	twin.ID[31] ^= 0xff // same type and first 8 bytes, another blob
	var sameIDOtherType BlobHandle = hs[2]
	sameIDOtherType.Type = 3 - sameIDOtherType.Type // data <-> tree: not listed
	id, err := r.SaveRefs(t.Context(), hs, ID{})
	if err != nil {
		t.Fatal(err)
	}
	indexHandles(r, append(append(slices.Clone(hs[1:]), twin), sameIDOtherType))
	got, err := r.LoadRefs(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, twin) || !slices.Contains(got, hs[1]) {
		t.Error("a blob sharing a listed prefix is not returned with it")
	}
	if slices.Contains(got, sameIDOtherType) {
		t.Error("a blob of another type was taken for a listed one")
	}
	if slices.Contains(got, lost) {
		t.Error("an unindexed blob came back whole")
	}
	missing := 0
	for _, h := range got {
		if !r.idx.Has(h) {
			missing++
			if !bytes.Equal(h.ID[:8], lost.ID[:8]) || h.Type != lost.Type {
				t.Errorf("unresolved entry %s does not carry the lost blob's prefix", h)
			}
		}
	}
	if missing != 1 || len(got) != len(hs)+1 {
		t.Errorf("%d entries (%d not indexed), want %d (1 not indexed)", len(got), missing, len(hs)+1)
	}
}

func TestDecodeRefsRejectsBadInput(t *testing.T) {
	u64 := func(v ...uint64) []byte {
		var out []byte
		for _, x := range v {
			out = binary.BigEndian.AppendUint64(out, x)
		}
		return out
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	parent := ID{9}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bad magic", []byte("SVRF\x09\x00\x00")},
		{"empty", nil},
		{"count beyond the file", cat(refsMagic, []byte{3}, u64(1, 2), []byte{0})},
		{"not increasing", cat(refsMagic, []byte{2}, u64(5, 5), []byte{0})},
		{"decreasing tree keys", cat(refsMagic, []byte{0, 2}, u64(9, 1))},
		{"trailing bytes", cat(refsMagic, []byte{1}, u64(1), []byte{0, 0})},
		{"missing tree section", cat(refsMagic, []byte{1}, u64(1))},
		{"delta with null parent", cat(refsDeltaMagic, make([]byte, 32), []byte{1, 0, 0, 0, 0})},
		{"delta too deep", cat(refsDeltaMagic, parent[:], []byte{MaxRefsDepth + 1, 0, 0, 0, 0})},
		{"old format, unknown type", cat(refsMagicV1, []byte{1, 7}, make([]byte, 32))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRefsFile(tc.data); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// and the good forms decode
	for _, data := range [][]byte{
		cat(refsMagic, []byte{2}, u64(1, 2), []byte{1}, u64(1)),
		cat(refsDeltaMagic, parent[:], []byte{1, 1}, u64(3), []byte{0, 0, 1}, u64(4)),
	} {
		if _, err := decodeRefsFile(data); err != nil {
			t.Errorf("%x: %v", data, err)
		}
	}
}
