package repo

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/shopvault/shopvault/backend"
)

// A refs list names every blob a snapshot references, so that the host key
// can forget snapshots and prune packs without reading trees.
//
// Blobs are named by their type and the first 8 bytes of their id (a
// refKey), not the whole id: a list costs 8 bytes a blob instead of 33.
// Blob ids are keyed hashes, so two blobs sharing a prefix happens about
// once in 2^64/blobs; it can only make prune keep a blob no snapshot uses
// (both blobs count as used), never drop a used one.
//
// Plaintext formats (zstd-compressed and age-encrypted like all metadata):
//
//	SVRF\x03 keys                                      a full list
//	SVRF\x04 parent [32]byte | uvarint depth | keys (added) | keys (removed)
//	keys = uvarint n | n × u64 big-endian (data blobs, increasing)
//	     | uvarint m | m × u64 big-endian (tree blobs, increasing)
//
// Formats 1 and 2 (whole 33-byte handles, written before) are still read.
var (
	refsMagicV1      = []byte("SVRF\x01") // a full list of handles (read only)
	refsDeltaMagicV1 = []byte("SVRF\x02") // a delta of handles (read only)
	refsMagic        = []byte("SVRF\x03") // a full list of keys
	refsDeltaMagic   = []byte("SVRF\x04") // a parent list plus changes, as keys
)

// MaxRefsDepth bounds a chain of delta refs lists; the next one is full.
const MaxRefsDepth = 16

// refKey names a blob in a refs list: its type and the first 8 bytes of its
// id, big endian, so keys sort like the handles they come from.
type refKey struct {
	t BlobType
	p uint64
}

func keyOf(h BlobHandle) refKey {
	return refKey{t: h.Type, p: binary.BigEndian.Uint64(h.ID[:8])}
}

func compareKeys(a, b refKey) int {
	if a.t != b.t {
		return cmp.Compare(a.t, b.t)
	}
	return cmp.Compare(a.p, b.p)
}

// refKeys returns the sorted, deduplicated keys of hs.
func refKeys(hs []BlobHandle) []refKey {
	out := make([]refKey, len(hs))
	for i, h := range hs {
		out[i] = keyOf(h)
	}
	slices.SortFunc(out, compareKeys)
	return slices.Compact(out)
}

// encodeRefs renders a full refs list of hs.
func encodeRefs(hs []BlobHandle) []byte {
	return appendKeys(append([]byte{}, refsMagic...), refKeys(hs))
}

// appendKeys appends sorted keys: data blobs, then tree blobs.
func appendKeys(out []byte, keys []refKey) []byte {
	split, _ := slices.BinarySearchFunc(keys, TreeBlob, func(k refKey, t BlobType) int { return cmp.Compare(k.t, t) })
	for _, part := range [][]refKey{keys[:split], keys[split:]} {
		out = binary.AppendUvarint(out, uint64(len(part)))
		for _, k := range part {
			out = binary.BigEndian.AppendUint64(out, k.p)
		}
	}
	return out
}

// refsFile is a decoded refs file: either a full list or a delta
// against a parent refs file.
type refsFile struct {
	parent         ID // zero for a full list
	depth          int
	full           []refKey
	added, removed []refKey
}

// keys reads a keys section (format 3 and 4).
func (d *decoder) keys() []refKey {
	var out []refKey
	for _, t := range []BlobType{DataBlob, TreeBlob} {
		n := d.uvarint()
		if d.err != nil {
			return nil
		}
		if n > uint64(len(d.buf))/8 {
			d.err = errors.New("refs count exceeds the file")
			return nil
		}
		out = slices.Grow(out, int(n))
		for i := uint64(0); i < n; i++ {
			k := refKey{t: t, p: binary.BigEndian.Uint64(d.buf)}
			d.buf = d.buf[8:]
			if i > 0 && k.p <= out[len(out)-1].p {
				d.err = errors.New("refs list not in increasing order")
				return nil
			}
			out = append(out, k)
		}
	}
	return out
}

// handlesAsKeys reads a list of whole handles (format 1 and 2).
func (d *decoder) handlesAsKeys() []refKey {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.buf))/33 {
		d.err = errors.New("refs count exceeds the file")
		return nil
	}
	out := make([]refKey, n)
	for i := range out {
		h := BlobHandle{Type: BlobType(d.byte()), ID: d.id()}
		if d.err == nil && h.Type != DataBlob && h.Type != TreeBlob {
			d.err = fmt.Errorf("unknown blob type %d in refs", h.Type)
			return nil
		}
		out[i] = keyOf(h)
	}
	// Sorted handles give sorted keys; only equal prefixes need merging.
	slices.SortFunc(out, compareKeys)
	return slices.Compact(out)
}

func decodeRefsFile(data []byte) (*refsFile, error) {
	hasMagic := func(m []byte) bool { return len(data) >= len(m) && string(data[:len(m)]) == string(m) }
	var list func(*decoder) []refKey
	var delta bool
	switch {
	case hasMagic(refsMagic):
		list = (*decoder).keys
	case hasMagic(refsDeltaMagic):
		list, delta = (*decoder).keys, true
	case hasMagic(refsMagicV1):
		list = (*decoder).handlesAsKeys
	case hasMagic(refsDeltaMagicV1):
		list, delta = (*decoder).handlesAsKeys, true
	default:
		return nil, errors.New("not a refs list (bad magic)")
	}
	d := decoder{buf: data[len(refsMagic):]}
	f := &refsFile{}
	if delta {
		f.parent = d.id()
		f.depth = int(min(d.uvarint(), MaxRefsDepth+1))
		f.added = list(&d)
		f.removed = list(&d)
		if d.err == nil && (f.parent.IsNull() || f.depth < 1 || f.depth > MaxRefsDepth) {
			d.err = errors.New("bad delta refs header")
		}
	} else {
		f.full = list(&d)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = errors.New("trailing bytes after the refs list")
	}
	if d.err != nil {
		return nil, d.err
	}
	return f, nil
}

// SaveRefs writes the refs list of a new snapshot and returns its id.
// When parent (the refs id of an earlier snapshot, or zero) is given, only
// the difference is stored, so a night that changed 1% of the files adds
// 1% of a list instead of all of it; chains are cut at MaxRefsDepth.
func (r *Repository) SaveRefs(ctx context.Context, refs []BlobHandle, parent ID) (ID, error) {
	keys := refKeys(refs)
	plain := appendKeys(append([]byte{}, refsMagic...), keys)
	if !parent.IsNull() {
		if pf, err := r.cachedRefsFile(ctx, parent); err == nil && pf.depth < MaxRefsDepth {
			if base, err := r.loadRefKeys(ctx, parent); err == nil {
				added, removed := diffKeys(base, keys)
				if len(added)+len(removed) < len(keys)/2 {
					plain = append([]byte{}, refsDeltaMagic...)
					plain = append(plain, parent[:]...)
					plain = binary.AppendUvarint(plain, uint64(pf.depth+1))
					plain = appendKeys(plain, added)
					plain = appendKeys(plain, removed)
				}
			}
		}
	}
	id, err := r.SaveMeta(ctx, backend.RefsFile, plain)
	if err != nil {
		return ID{}, fmt.Errorf("save refs: %w", err)
	}
	return id, nil
}

// diffKeys returns what b adds to and removes from a (both sorted).
func diffKeys(a, b []refKey) (added, removed []refKey) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && compareKeys(a[i], b[j]) < 0):
			removed = append(removed, a[i])
			i++
		case i == len(a) || compareKeys(a[i], b[j]) > 0:
			added = append(added, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

func (r *Repository) loadRefsFile(ctx context.Context, id ID) (*refsFile, error) {
	plain, err := r.LoadMeta(ctx, backend.RefsFile, id.String())
	if err != nil {
		return nil, err
	}
	f, err := decodeRefsFile(plain)
	if err != nil {
		return nil, &CorruptError{What: "refs/" + id.Short(), Err: err}
	}
	return f, nil
}

// RefsChain returns the ids of the refs files a refs list is built from
// (itself first), so prune keeps the parents of delta lists.
func (r *Repository) RefsChain(ctx context.Context, id ID) ([]ID, error) {
	var chain []ID
	for cur := id; !cur.IsNull(); {
		if len(chain) > MaxRefsDepth {
			return nil, &CorruptError{What: "refs/" + id.Short(), Err: errors.New("delta chain too long")}
		}
		chain = append(chain, cur)
		f, err := r.cachedRefsFile(ctx, cur)
		if err != nil {
			return nil, err
		}
		cur = f.parent
	}
	return chain, nil
}

// LoadRefs returns the blobs a snapshot's refs list names, sorted, resolved
// against the loaded index: a refs list names blobs by type and id prefix,
// and every indexed blob of a listed type and prefix is returned. An entry
// that matches no indexed blob (a lost blob) comes back with only the first
// 8 bytes of its id set, so it is never found in the index either and
// callers that count missing blobs still count it.
func (r *Repository) LoadRefs(ctx context.Context, id ID) ([]BlobHandle, error) {
	keys, err := r.loadRefKeys(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.idx.resolveKeys(keys), nil
}

// loadRefKeys loads a refs list as keys, resolving deltas: the chain is
// read once (decoded files are cached, so the snapshots of one prune or
// check share their parents) and applied oldest first with linear merges.
func (r *Repository) loadRefKeys(ctx context.Context, id ID) ([]refKey, error) {
	var chain []*refsFile
	for cur := id; ; {
		if len(chain) > MaxRefsDepth {
			return nil, &CorruptError{What: "refs/" + id.Short(), Err: errors.New("delta chain too long")}
		}
		f, err := r.cachedRefsFile(ctx, cur)
		if err != nil {
			if len(chain) > 0 {
				return nil, fmt.Errorf("parent of refs/%s: %w", id.Short(), err)
			}
			return nil, err
		}
		chain = append(chain, f)
		if f.parent.IsNull() {
			break
		}
		cur = f.parent
	}
	out := chain[len(chain)-1].full
	for i := len(chain) - 2; i >= 0; i-- {
		out = applyDelta(out, chain[i].added, chain[i].removed)
	}
	return out, nil
}

// applyDelta returns base minus removed plus added; all three sorted.
func applyDelta(base, added, removed []refKey) []refKey {
	out := make([]refKey, 0, len(base)+len(added))
	i, j := 0, 0
	for _, k := range base {
		for j < len(removed) && compareKeys(removed[j], k) < 0 {
			j++
		}
		if j < len(removed) && removed[j] == k {
			continue
		}
		for i < len(added) && compareKeys(added[i], k) < 0 {
			out = append(out, added[i])
			i++
		}
		if i < len(added) && added[i] == k {
			i++
		}
		out = append(out, k)
	}
	return append(out, added[i:]...)
}

// refsCacheSize bounds the decoded refs files kept in memory.
const refsCacheSize = 32

func (r *Repository) cachedRefsFile(ctx context.Context, id ID) (*refsFile, error) {
	r.refsMu.Lock()
	if f, ok := r.refsCache[id]; ok {
		r.refsMu.Unlock()
		return f, nil
	}
	r.refsMu.Unlock()
	f, err := r.loadRefsFile(ctx, id)
	if err != nil {
		return nil, err
	}
	r.refsMu.Lock()
	defer r.refsMu.Unlock()
	if r.refsCache == nil || len(r.refsCache) >= refsCacheSize {
		r.refsCache = map[ID]*refsFile{}
	}
	r.refsCache[id] = f
	return f, nil
}

func compareHandles(a, b BlobHandle) int {
	if a.Type != b.Type {
		return int(a.Type) - int(b.Type)
	}
	return slices.Compare(a.ID[:], b.ID[:])
}
