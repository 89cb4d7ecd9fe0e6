package repo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// SnapshotStats summarise a backup run.
type SnapshotStats struct {
	Files        int64   `json:"files"`
	Dirs         int64   `json:"dirs"`
	Bytes        int64   `json:"bytes"`        // bytes of all files in the snapshot
	BytesRead    int64   `json:"bytes_read"`   // bytes read from disk this run
	BlobsAdded   int64   `json:"blobs_added"`  // new blobs stored
	BytesAdded   int64   `json:"bytes_added"`  // plaintext bytes of new blobs
	StoredAdded  int64   `json:"stored_added"` // bytes of new packs
	Errors       int64   `json:"errors"`       // files that could not be read
	DurationSecs float64 `json:"duration_seconds"`
}

// DBInfo records the databases dumped into a snapshot. The manifest (table
// names, digests) lives in a data blob, readable with the restore key only.
type DBInfo struct {
	Databases    []string  `json:"databases"`
	Method       string    `json:"method"`
	BinlogFile   string    `json:"binlog_file,omitempty"`
	BinlogPos    uint64    `json:"binlog_pos,omitempty"`
	GTID         string    `json:"gtid,omitempty"`
	ConsistentAt time.Time `json:"consistent_at"`
	Manifest     ID        `json:"manifest"`
}

// Snapshot is one backup. Its header is readable with the host key.
type Snapshot struct {
	Time     time.Time     `json:"time"`
	Hostname string        `json:"hostname"`
	Username string        `json:"username,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Paths    []string      `json:"paths"`
	Tree     ID            `json:"tree"`
	Refs     ID            `json:"refs"`
	Partial  bool          `json:"partial,omitempty"`
	Stats    SnapshotStats `json:"stats"`
	DB       *DBInfo       `json:"db,omitempty"`
	Program  string        `json:"program"`

	// Filled when loaded:
	ID         ID        `json:"-"`
	StoredTime time.Time `json:"-"`
}

// SaveSnapshot writes sn and returns its id.
func (r *Repository) SaveSnapshot(ctx context.Context, sn *Snapshot) (ID, error) {
	data, err := json.Marshal(sn)
	if err != nil {
		return ID{}, err
	}
	id, err := r.SaveMeta(ctx, backend.SnapshotFile, data)
	if err != nil {
		return ID{}, fmt.Errorf("save snapshot: %w", err)
	}
	sn.ID = id
	return id, nil
}

// LoadSnapshot loads one snapshot by full id.
func (r *Repository) LoadSnapshot(ctx context.Context, id string) (*Snapshot, error) {
	plain, err := r.LoadMeta(ctx, backend.SnapshotFile, id)
	if err != nil {
		return nil, err
	}
	var sn Snapshot
	if err := json.Unmarshal(plain, &sn); err != nil {
		return nil, &CorruptError{What: "snapshot " + short(id), Err: err}
	}
	sn.ID, _ = ParseID(id)
	return &sn, nil
}

// Snapshots loads every snapshot, oldest first. Damaged snapshots are
// returned as errors (joined) while the rest load.
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	var infos []backend.FileInfo
	if err := r.be.List(ctx, backend.SnapshotFile, func(fi backend.FileInfo) error {
		infos = append(infos, fi)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*Snapshot
	var errs []error
	for _, fi := range infos {
		sn, err := r.LoadSnapshot(ctx, fi.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sn.StoredTime = fi.ModTime
		out = append(out, sn)
	}
	slices.SortFunc(out, func(a, b *Snapshot) int { return a.Time.Compare(b.Time) })
	return out, errors.Join(errs...)
}

// FindSnapshot resolves "latest" or an id prefix (at least 4 characters).
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	if ref == "latest" {
		sns, err := r.Snapshots(ctx)
		if len(sns) == 0 {
			if err != nil {
				return nil, err
			}
			return nil, errors.New("the repository has no snapshots yet")
		}
		return sns[len(sns)-1], nil
	}
	if len(ref) < 4 {
		return nil, fmt.Errorf("snapshot id %q is too short: give at least 4 hex characters or 'latest'", ref)
	}
	var match []string
	if err := r.be.List(ctx, backend.SnapshotFile, func(fi backend.FileInfo) error {
		if strings.HasPrefix(fi.Name, ref) {
			match = append(match, fi.Name)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("no snapshot %q (list them with 'shopvault snapshots')", ref)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot id %q is ambiguous (%d matches): give more characters", ref, len(match))
}

var (
	refsMagic      = []byte("SVRF\x01") // a full list
	refsDeltaMagic = []byte("SVRF\x02") // a parent list plus changes
)

// MaxRefsDepth bounds a chain of delta refs lists; the next one is full.
const MaxRefsDepth = 16

// EncodeRefs renders a full refs list (sorted, deduplicated).
func EncodeRefs(refs []BlobHandle) []byte {
	refs = sortedRefs(refs)
	out := append([]byte{}, refsMagic...)
	return appendHandles(out, refs)
}

func sortedRefs(refs []BlobHandle) []BlobHandle {
	refs = slices.Clone(refs)
	slices.SortFunc(refs, compareHandles)
	return slices.Compact(refs)
}

func appendHandles(out []byte, hs []BlobHandle) []byte {
	out = binary.AppendUvarint(out, uint64(len(hs)))
	for _, h := range hs {
		out = append(out, byte(h.Type))
		out = append(out, h.ID[:]...)
	}
	return out
}

func compareHandles(a, b BlobHandle) int {
	if a.Type != b.Type {
		return int(a.Type) - int(b.Type)
	}
	return slices.Compare(a.ID[:], b.ID[:])
}

// refsFile is a decoded refs file: either a full list or a delta
// against a parent refs file.
type refsFile struct {
	parent         ID // zero for a full list
	depth          int
	full           []BlobHandle
	added, removed []BlobHandle
}

func (d *decoder) handles() []BlobHandle {
	n := d.uvarint()
	if d.err != nil || n*33 > uint64(len(d.buf)) {
		d.err = errors.New("refs count exceeds the file")
		return nil
	}
	out := make([]BlobHandle, n)
	for i := range out {
		out[i].Type = BlobType(d.byte())
		out[i].ID = d.id()
		if d.err == nil && out[i].Type != DataBlob && out[i].Type != TreeBlob {
			d.err = fmt.Errorf("unknown blob type %d in refs", out[i].Type)
			return nil
		}
	}
	return out
}

func decodeRefsFile(data []byte) (*refsFile, error) {
	switch {
	case len(data) >= len(refsMagic) && string(data[:len(refsMagic)]) == string(refsMagic):
		d := decoder{buf: data[len(refsMagic):]}
		full := d.handles()
		if d.err == nil && len(d.buf) != 0 {
			d.err = errors.New("trailing bytes after the refs list")
		}
		return &refsFile{full: full}, d.err
	case len(data) >= len(refsDeltaMagic) && string(data[:len(refsDeltaMagic)]) == string(refsDeltaMagic):
		d := decoder{buf: data[len(refsDeltaMagic):]}
		f := &refsFile{parent: d.id(), depth: int(d.uvarint())}
		f.added = d.handles()
		f.removed = d.handles()
		if d.err == nil && (f.parent.IsNull() || f.depth < 1 || f.depth > MaxRefsDepth) {
			d.err = errors.New("bad delta refs header")
		}
		if d.err == nil && len(d.buf) != 0 {
			d.err = errors.New("trailing bytes after the refs delta")
		}
		return f, d.err
	}
	return nil, errors.New("not a refs list (bad magic)")
}

// DecodeRefs parses a full refs list.
func DecodeRefs(data []byte) ([]BlobHandle, error) {
	f, err := decodeRefsFile(data)
	if err != nil {
		return nil, err
	}
	if !f.parent.IsNull() {
		return nil, errors.New("a delta refs list needs its parent: use Repository.LoadRefs")
	}
	return f.full, nil
}

// SaveRefs writes the refs list of a new snapshot and returns its id.
// When parent (the refs id of an earlier snapshot, or zero) is given, only
// the difference is stored, so a night that changed 1% of the files adds
// 1% of a list instead of all of it; chains are cut at MaxRefsDepth.
func (r *Repository) SaveRefs(ctx context.Context, refs []BlobHandle, parent ID) (ID, error) {
	refs = sortedRefs(refs)
	plain := append([]byte{}, refsMagic...)
	plain = appendHandles(plain, refs)
	if !parent.IsNull() {
		if pf, err := r.loadRefsFile(ctx, parent); err == nil && pf.depth < MaxRefsDepth {
			if base, err := r.LoadRefs(ctx, parent); err == nil {
				added, removed := diffRefs(base, refs)
				if len(added)+len(removed) < len(refs)/2 {
					plain = append([]byte{}, refsDeltaMagic...)
					plain = append(plain, parent[:]...)
					plain = binary.AppendUvarint(plain, uint64(pf.depth+1))
					plain = appendHandles(plain, added)
					plain = appendHandles(plain, removed)
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

// diffRefs returns what b adds to and removes from a (both sorted).
func diffRefs(a, b []BlobHandle) (added, removed []BlobHandle) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && compareHandles(a[i], b[j]) < 0):
			removed = append(removed, a[i])
			i++
		case i == len(a) || compareHandles(a[i], b[j]) > 0:
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
		f, err := r.loadRefsFile(ctx, cur)
		if err != nil {
			return nil, err
		}
		cur = f.parent
	}
	return chain, nil
}

// LoadRefs loads a snapshot's refs list, resolving deltas: the chain is
// read once (decoded files are cached, so the snapshots of one prune or
// check share their parents) and applied oldest first with linear merges.
func (r *Repository) LoadRefs(ctx context.Context, id ID) ([]BlobHandle, error) {
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
func applyDelta(base, added, removed []BlobHandle) []BlobHandle {
	out := make([]BlobHandle, 0, len(base)+len(added))
	i, j := 0, 0
	for _, h := range base {
		for j < len(removed) && compareHandles(removed[j], h) < 0 {
			j++
		}
		if j < len(removed) && removed[j] == h {
			continue
		}
		for i < len(added) && compareHandles(added[i], h) < 0 {
			out = append(out, added[i])
			i++
		}
		if i < len(added) && added[i] == h {
			i++
		}
		out = append(out, h)
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

// LoadTree loads and validates a tree blob (restore key).
func (r *Repository) LoadTree(ctx context.Context, id ID) (*Tree, error) {
	var data []byte
	if c := r.trees.Load(); c != nil {
		if z, ok := c.get(id); ok {
			var err error
			if data, err = r.codec.decompress(nil, z); err != nil {
				data = nil // fall back to the repository
			}
		}
	}
	if data == nil {
		var err error
		data, err = r.LoadBlob(ctx, BlobHandle{Type: TreeBlob, ID: id}, nil)
		if err != nil {
			return nil, err
		}
	}
	t, err := DecodeTree(data)
	if err != nil {
		return nil, &CorruptError{What: "tree " + id.Short(), Err: err}
	}
	return t, nil
}

// FindNode walks path (slash separated, relative to the snapshot root)
// from root and returns the node and, for directories, its tree.
func (r *Repository) FindNode(ctx context.Context, root ID, path string) (*Node, *Tree, error) {
	dirNode := &Node{Name: "/", Type: NodeDir, Subtree: &root}
	cur := dirNode
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		if part == "" {
			continue
		}
		if cur.Type != NodeDir {
			return nil, nil, fmt.Errorf("%s: %w", path, errNotDir)
		}
		t, err := r.LoadTree(ctx, *cur.Subtree)
		if err != nil {
			return nil, nil, err
		}
		n := t.Find(part)
		if n == nil {
			return nil, nil, fmt.Errorf("%s: no such file or directory in the snapshot", path)
		}
		cur = n
	}
	if cur.Type == NodeDir {
		t, err := r.LoadTree(ctx, *cur.Subtree)
		return cur, t, err
	}
	return cur, nil, nil
}

// RemoveSnapshot deletes a snapshot. Its refs list (which later
// snapshots' delta lists may build on) and its blobs stay until Prune.
func (r *Repository) RemoveSnapshot(ctx context.Context, sn *Snapshot) error {
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: sn.ID.String()}); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", sn.ID.Short(), err)
	}
	return nil
}
