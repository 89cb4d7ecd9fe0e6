package repo

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// IndexEntry locates a blob in a stored pack.
type IndexEntry struct {
	PackedBlob
	Pack ID
}

type entry struct {
	pack                      uint32 // index into Index.packs, or pendingPack
	offset, length, rawLength uint32
}

// pendingPack marks a blob that a BlobSaver is storing: known for
// deduplication, not yet loadable.
const pendingPack = ^uint32(0)

// Index maps blobs to packs. It is safe for concurrent use.
type Index struct {
	mu       sync.RWMutex
	packs    []ID
	packIdx  map[ID]uint32
	packSize map[ID]int64
	blobs    map[BlobHandle]entry
	// files lists the index files loaded (name -> packs it covers).
	files map[string][]ID
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{packIdx: map[ID]uint32{}, packSize: map[ID]int64{}, blobs: map[BlobHandle]entry{}, files: map[string][]ID{}}
}

// Has reports whether the blob is indexed.
func (x *Index) Has(h BlobHandle) bool {
	x.mu.RLock()
	_, ok := x.blobs[h]
	x.mu.RUnlock()
	return ok
}

// Lookup returns where a blob is stored.
func (x *Index) Lookup(h BlobHandle) (IndexEntry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs[h]
	if !ok || e.pack == pendingPack {
		return IndexEntry{}, false
	}
	return IndexEntry{PackedBlob: PackedBlob{BlobHandle: h, Offset: e.offset, Length: e.length, RawLength: e.rawLength}, Pack: x.packs[e.pack]}, true
}

// Len returns the number of indexed blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}

// Packs returns every indexed pack with its stored size.
func (x *Index) Packs() map[ID]int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[ID]int64, len(x.packSize))
	for k, v := range x.packSize {
		out[k] = v
	}
	return out
}

// PackSize returns the stored size the index records for pack (0 when
// it records none).
func (x *Index) PackSize(pack ID) int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.packSize[pack]
}

// Files returns the names of the loaded index files and the packs each covers.
func (x *Index) Files() map[string][]ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[string][]ID, len(x.files))
	for k, v := range x.files {
		out[k] = v
	}
	return out
}

// Each calls fn for every indexed blob, under a read lock: fn must not
// call back into the index.
func (x *Index) Each(fn func(IndexEntry)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for h, e := range x.blobs {
		if e.pack == pendingPack {
			continue
		}
		fn(IndexEntry{PackedBlob: PackedBlob{BlobHandle: h, Offset: e.offset, Length: e.length, RawLength: e.rawLength}, Pack: x.packs[e.pack]})
	}
}

// addPack records a pack and its blobs.
func (x *Index) addPack(pack ID, size int64, blobs []PackedBlob) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addPackLocked(pack, size, blobs)
}

func (x *Index) addPackLocked(pack ID, size int64, blobs []PackedBlob) {
	pi, ok := x.packIdx[pack]
	if !ok {
		pi = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packIdx[pack] = pi
	}
	x.packSize[pack] = size
	for _, b := range blobs {
		if old, dup := x.blobs[b.BlobHandle]; dup && old.pack != pendingPack {
			continue // the same blob in two packs: keep the first
		}
		x.blobs[b.BlobHandle] = entry{pack: pi, offset: b.Offset, length: b.Length, rawLength: b.RawLength}
	}
}

// resolveKeys returns the indexed blobs whose refs key (type and id
// prefix) is one of keys (sorted), sorted by type and id. A key that no
// indexed blob matches comes back as a handle with only its 8 prefix bytes
// set, which names no blob.
func (x *Index) resolveKeys(keys []refKey) []BlobHandle {
	matched := make([]bool, len(keys))
	out := make([]BlobHandle, 0, len(keys))
	x.mu.RLock()
	for h, e := range x.blobs {
		if e.pack == pendingPack {
			continue
		}
		if i, ok := slices.BinarySearchFunc(keys, keyOf(h), compareKeys); ok {
			matched[i] = true
			out = append(out, h)
		}
	}
	x.mu.RUnlock()
	for i, k := range keys {
		if !matched[i] {
			h := BlobHandle{Type: k.t}
			binary.BigEndian.PutUint64(h.ID[:8], k.p)
			out = append(out, h)
		}
	}
	slices.SortFunc(out, compareHandles)
	return out
}

// reserve marks h as being stored; it reports false if h is already
// indexed or reserved.
func (x *Index) reserve(h BlobHandle) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.blobs[h]; ok {
		return false
	}
	x.blobs[h] = entry{pack: pendingPack}
	return true
}

// unreserve drops a reservation that will not be stored.
func (x *Index) unreserve(h BlobHandle) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.blobs[h]; ok && e.pack == pendingPack {
		delete(x.blobs, h)
	}
}

// dropPending removes every reservation (after a failed save).
func (x *Index) dropPending() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for h, e := range x.blobs {
		if e.pack == pendingPack {
			delete(x.blobs, h)
		}
	}
}

// IndexPack is one pack's entry in an index file.
type IndexPack struct {
	ID    ID
	Size  int64
	Blobs []PackedBlob
}

// Index file plaintext, format 2 (format 1 is still read):
//
//	SVIX\x02 | uvarint packs | per pack: id [32]byte | uvarint size | uvarint blobs
//	  | per blob, in offset order: type u8 | id [32]byte
//	    | varint offset - end of the previous blob (0 when packed back to back)
//	    | uvarint length | varint raw length - length (0 when stored uncompressed)
//
// Format 1 stored offset and raw length whole: 4-5 bytes more a blob (11%).
var (
	indexMagicV1 = []byte("SVIX\x01")
	indexMagic   = []byte("SVIX\x02")
)

// EncodeIndex renders an index file's plaintext.
func EncodeIndex(packs []IndexPack) []byte {
	out := append([]byte{}, indexMagic...)
	out = binary.AppendUvarint(out, uint64(len(packs)))
	for _, p := range packs {
		out = append(out, p.ID[:]...)
		out = binary.AppendUvarint(out, uint64(p.Size))
		out = binary.AppendUvarint(out, uint64(len(p.Blobs)))
		blobs := p.Blobs
		if !slices.IsSortedFunc(blobs, byOffset) {
			blobs = slices.SortedStableFunc(slices.Values(blobs), byOffset)
		}
		var end int64
		for _, b := range blobs {
			out = append(out, byte(b.Type))
			out = append(out, b.ID[:]...)
			out = binary.AppendVarint(out, int64(b.Offset)-end)
			out = binary.AppendUvarint(out, uint64(b.Length))
			out = binary.AppendVarint(out, int64(b.RawLength)-int64(b.Length))
			end = int64(b.Offset) + int64(b.Length)
		}
	}
	return out
}

func byOffset(a, b PackedBlob) int { return cmp.Compare(a.Offset, b.Offset) }

// DecodeIndex parses an index file's plaintext (format 1 or 2). It never
// panics on bad input.
func DecodeIndex(data []byte) ([]IndexPack, error) {
	v2 := len(data) >= len(indexMagic) && string(data[:len(indexMagic)]) == string(indexMagic)
	if !v2 && (len(data) < len(indexMagicV1) || string(data[:len(indexMagicV1)]) != string(indexMagicV1)) {
		return nil, errors.New("not an index (bad magic)")
	}
	d := decoder{buf: data[len(indexMagic):]}
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		return nil, errors.New("index pack count exceeds its size")
	}
	packs := make([]IndexPack, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		var p IndexPack
		p.ID = d.id()
		p.Size = int64(d.uvarint())
		nb := d.uvarint()
		if nb > uint64(len(d.buf))/34+1 {
			return nil, errors.New("index blob count exceeds its size")
		}
		p.Blobs = make([]PackedBlob, 0, nb)
		var end int64
		for j := uint64(0); j < nb && d.err == nil; j++ {
			var b PackedBlob
			b.Type = BlobType(d.byte())
			b.ID = d.id()
			if v2 {
				b.Offset = d.offsetFrom(end)
				b.Length = d.u32()
				b.RawLength = d.offsetFrom(int64(b.Length))
				end = int64(b.Offset) + int64(b.Length)
			} else {
				b.Offset = d.u32()
				b.Length = d.u32()
				b.RawLength = d.u32()
			}
			if d.err == nil && b.Type != DataBlob && b.Type != TreeBlob {
				return nil, fmt.Errorf("unknown blob type %d", b.Type)
			}
			if d.err == nil && int64(b.Offset)+int64(b.Length) > p.Size {
				return nil, fmt.Errorf("blob %s lies beyond its pack's size", b.ID.Short())
			}
			p.Blobs = append(p.Blobs, b)
		}
		packs = append(packs, p)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.buf) != 0 {
		return nil, errors.New("trailing bytes after the index")
	}
	return packs, nil
}

type decoder struct {
	buf []byte
	err error
}

var errTruncated = errors.New("truncated")

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) < 1 {
		d.err = errTruncated
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) id() ID {
	var id ID
	if d.err != nil || len(d.buf) < 32 {
		d.err = errTruncated
		return id
	}
	copy(id[:], d.buf)
	d.buf = d.buf[32:]
	return id
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.err = errors.New("number out of range")
		return 0
	}
	return uint32(v)
}

// offsetFrom reads a signed varint and returns base plus it as a uint32.
func (d *decoder) offsetFrom(base int64) uint32 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.buf = d.buf[n:]
	if v < -base || v > 1<<32-1-base {
		d.err = errors.New("number out of range")
		return 0
	}
	return uint32(base + v)
}
