package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

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
	// Loaded 8 at a time: each is a round trip or two on a remote
	// repository, and a year of nightly snapshots kept by forget is dozens.
	sns := make([]*Snapshot, len(infos))
	errs := make([]error, len(infos))
	var g errgroup.Group // errors are collected, not cancelling the others
	g.SetLimit(8)
	for i, fi := range infos {
		g.Go(func() error {
			sn, err := r.LoadSnapshot(ctx, fi.Name)
			if err != nil {
				errs[i] = err
				return nil
			}
			sn.StoredTime = fi.ModTime
			sns[i] = sn
			return nil
		})
	}
	_ = g.Wait()
	var out []*Snapshot
	for _, sn := range sns {
		if sn != nil {
			out = append(out, sn)
		}
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

// LoadTree loads and validates a tree blob (restore key).
func (r *Repository) LoadTree(ctx context.Context, id ID) (*Tree, error) {
	var data []byte
	if c := r.trees.Load(); c != nil {
		data, _ = c.get(id) // nil when not cached: loaded from the repository
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
