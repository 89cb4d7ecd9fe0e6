package repo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// PruneOptions configure Prune.
type PruneOptions struct {
	// Repack rewrites packs whose unused share exceeds RepackThreshold
	// (needs the restore key: their blobs must be read).
	Repack bool
	// RepackThreshold is the unused fraction of a pack's bytes that makes it
	// worth repacking (0: DefaultRepackThreshold).
	RepackThreshold float64
	DryRun          bool
	// Now is the clock for the age of unindexed packs (nil: time.Now).
	Now func() time.Time
}

// DefaultRepackThreshold is the unused share of a pack above which
// prune --repack rewrites it. At 0.1 a repository keeps at most 10% of its
// pack bytes unused; measured after 30 nights with ~1% change a night (bench/
// README-prune.md), going from 0.2 to 0.1 rewrote 17 MiB more to free
// 2.7 MiB more (0.4% of the repository), and 0.05 would rewrite 140 MiB
// more to free another 9 MiB.
const DefaultRepackThreshold = 0.1

// OrphanAge is how old a pack that no index names must be before prune
// deletes it.
const OrphanAge = time.Hour

// PruneResult says what Prune removed.
type PruneResult struct {
	PacksDeleted   int
	BytesDeleted   int64
	PacksRepacked  int
	PacksKept      int
	UnusedKept     int64 // bytes of unused blobs left in partly used packs
	IndexRewritten bool
	Unreferenced   int // packs in storage that no index named (interrupted backups)
	RefsDeleted    int // refs lists of forgotten snapshots
}

// Prune deletes packs that no snapshot uses, reading only the snapshots'
// refs lists and the index, so the host key can run it. The caller must
// hold an exclusive lock. The index is rewritten before any pack is
// deleted, and a pack named by an index file written after Prune started
// (a concurrent writer that ignored the lock) is never deleted.
func (r *Repository) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	if o.Repack && !r.canRead {
		return nil, ErrNeedRestoreKey
	}
	if o.RepackThreshold == 0 {
		o.RepackThreshold = DefaultRepackThreshold
	}
	if err := r.ReloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("prune needs a readable index (run 'shopvault check'): %w", err)
	}
	startFiles := r.idx.Files()
	sns, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune needs every snapshot readable: %w", err)
	}
	// used holds the refs keys (type and id prefix) of every blob a
	// snapshot references; a blob whose key is in it is kept.
	used := map[refKey]struct{}{}
	liveRefs := map[ID]bool{}
	for _, sn := range sns {
		keys, err := r.loadRefKeys(ctx, sn.Refs)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
		}
		for _, k := range keys {
			used[k] = struct{}{}
		}
		chain, err := r.RefsChain(ctx, sn.Refs)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
		}
		for _, id := range chain {
			liveRefs[id] = true
		}
	}
	// Refs lists no snapshot builds on any more (forgotten snapshots).
	var deadRefs []string
	if err := r.be.List(ctx, backend.RefsFile, func(fi backend.FileInfo) error {
		if id, err := ParseID(fi.Name); err == nil && !liveRefs[id] {
			deadRefs = append(deadRefs, fi.Name)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list refs: %w", err)
	}
	type packUse struct {
		blobs      []PackedBlob
		usedBytes  int64
		totalBytes int64
	}
	packs := map[ID]*packUse{}
	r.idx.Each(func(e IndexEntry) {
		p := packs[e.Pack]
		if p == nil {
			p = &packUse{}
			packs[e.Pack] = p
		}
		p.blobs = append(p.blobs, e.PackedBlob)
		p.totalBytes += int64(e.Length)
		if _, ok := used[keyOf(e.BlobHandle)]; ok {
			p.usedBytes += int64(e.Length)
		}
	})
	sizes := r.idx.Packs()
	res := &PruneResult{}
	var remove, repack []ID
	var keep []IndexPack
	for id, p := range packs {
		switch {
		case p.usedBytes == 0:
			remove = append(remove, id)
			res.BytesDeleted += sizes[id]
		case o.Repack && float64(p.totalBytes-p.usedBytes) > o.RepackThreshold*float64(p.totalBytes):
			repack = append(repack, id)
		default:
			slices.SortFunc(p.blobs, func(a, b PackedBlob) int { return int(a.Offset) - int(b.Offset) })
			keep = append(keep, IndexPack{ID: id, Size: sizes[id], Blobs: p.blobs})
			res.UnusedKept += p.totalBytes - p.usedBytes
		}
	}
	// Packs in storage that no index names: left by interrupted backups.
	// A young one may belong to a backup still running (one that ignored
	// the lock): only packs older than OrphanAge go.
	var orphans []ID
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err != nil {
			return nil
		}
		if _, ok := sizes[id]; !ok && now.Sub(fi.ModTime) > OrphanAge {
			orphans = append(orphans, id)
			res.BytesDeleted += fi.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	res.Unreferenced = len(orphans)
	res.PacksDeleted = len(remove) + len(orphans)
	res.PacksRepacked = len(repack)
	res.PacksKept = len(keep)
	res.RefsDeleted = len(deadRefs)
	if o.DryRun {
		return res, nil
	}
	for _, name := range deadRefs {
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.RefsFile, Name: name}); err != nil && !backend.IsNotExist(err) {
			return nil, fmt.Errorf("remove refs %s: %w", short(name), err)
		}
	}
	if len(remove) == 0 && len(repack) == 0 && len(orphans) == 0 {
		return res, nil
	}

	if len(repack) > 0 {
		if err := r.repack(ctx, repack, used); err != nil {
			return nil, fmt.Errorf("repack: %w", err)
		}
	}
	// New index for the kept packs, then drop the old index files.
	for i := 0; i < len(keep); i += 1000 {
		batch := keep[i:min(i+1000, len(keep))]
		if _, err := r.SaveIndex(ctx, batch); err != nil {
			return nil, err
		}
	}
	for name := range startFiles {
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: name}); err != nil && !backend.IsNotExist(err) {
			return nil, fmt.Errorf("remove old index %s: %w", short(name), err)
		}
	}
	res.IndexRewritten = true
	// A writer that ignored our lock may have indexed a pack meanwhile.
	protected := map[ID]bool{}
	var newFiles []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		newFiles = append(newFiles, fi.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	fresh := NewIndex()
	for _, name := range newFiles {
		plain, err := r.LoadMeta(ctx, backend.IndexFile, name)
		if err != nil {
			return nil, fmt.Errorf("re-read index %s: %w", short(name), err)
		}
		ps, err := DecodeIndex(plain)
		if err != nil {
			return nil, &CorruptError{What: "index/" + short(name), Err: err}
		}
		for _, p := range ps {
			protected[p.ID] = true
			fresh.addPack(p.ID, p.Size, p.Blobs)
		}
	}
	for _, id := range append(append(remove, repack...), orphans...) {
		if protected[id] {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}); err != nil && !backend.IsNotExist(err) {
			return nil, fmt.Errorf("remove pack %s: %w", id.Short(), err)
		}
	}
	fresh.files = map[string][]ID{}
	for _, name := range newFiles {
		fresh.files[name] = nil
	}
	r.idx = fresh
	return res, nil
}

// repack copies the used blobs of packs into new packs.
func (r *Repository) repack(ctx context.Context, ids []ID, used map[refKey]struct{}) error {
	byPack := map[ID][]PackedBlob{}
	r.idx.Each(func(e IndexEntry) {
		if _, ok := used[keyOf(e.BlobHandle)]; ok && slices.Contains(ids, e.Pack) {
			byPack[e.Pack] = append(byPack[e.Pack], e.PackedBlob)
		}
	})
	// The saver must not skip these blobs as known: give it an index
	// without the packs being repacked.
	saverIdx := NewIndex()
	r.idx.Each(func(e IndexEntry) {
		if !slices.Contains(ids, e.Pack) {
			saverIdx.addPack(e.Pack, 0, []PackedBlob{e.PackedBlob})
		}
	})
	shadow := &Repository{be: r.be, cfg: r.cfg, sec: r.sec, codec: r.codec, identities: r.identities,
		metaRecipients: r.metaRecipients, restoreRecipients: r.restoreRecipients, canRead: r.canRead,
		canWrite: r.canWrite, idx: saverIdx, packCache: r.packCache, TempDir: r.TempDir}
	s := shadow.NewBlobSaver(ctx, 2)
	for _, id := range ids {
		blobs := byPack[id]
		slices.SortFunc(blobs, func(a, b PackedBlob) int { return int(a.Offset) - int(b.Offset) })
		err := r.StreamPack(ctx, id, blobs, func(b PackedBlob, data []byte) error {
			_, err := s.SaveID(ctx, b.BlobHandle, data)
			return err
		})
		if err != nil {
			s.Abort()
			return err
		}
	}
	return s.Finish(ctx)
}
