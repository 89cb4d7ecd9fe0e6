package repo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/backend"
)

// CheckOptions configure Check.
type CheckOptions struct {
	// ReadData decrypts every pack and verifies every blob (restore key).
	ReadData bool
	// Workers is the number of packs checked in parallel (default 2).
	Workers int
	// PackDone, if set, is called after each pack (from worker goroutines).
	PackDone func(size int64)
}

// CheckResult lists what Check found. Problems are errors; Unreferenced
// packs are only reported (prune removes them).
type CheckResult struct {
	Snapshots    int
	Packs        int
	Blobs        int
	PackBytes    int64
	Problems     []error
	Unreferenced []ID
}

// OK reports whether no problem was found.
func (c *CheckResult) OK() bool { return len(c.Problems) == 0 }

// Check verifies the repository: index files, that every indexed pack
// exists with the right size and that its content matches its name,
// that every snapshot's refs are indexed; with ReadData, that every blob
// decrypts and matches its id. It returns an error only when the check
// itself could not run.
func (r *Repository) Check(ctx context.Context, o CheckOptions) (*CheckResult, error) {
	if o.ReadData && !r.canRead {
		return nil, ErrNeedRestoreKey
	}
	if o.Workers < 1 {
		o.Workers = 2
	}
	res := &CheckResult{}
	var mu sync.Mutex
	problem := func(err error) {
		mu.Lock()
		res.Problems = append(res.Problems, err)
		mu.Unlock()
	}
	if err := r.LoadIndex(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		problem(err)
	}
	indexed := r.idx.Packs()
	stored := map[ID]int64{}
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := ParseID(fi.Name)
		if err != nil {
			problem(fmt.Errorf("data/%s: not a pack name", fi.Name))
			return nil
		}
		stored[id] = fi.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	blobsByPack := map[ID][]PackedBlob{}
	r.idx.Each(func(e IndexEntry) {
		blobsByPack[e.Pack] = append(blobsByPack[e.Pack], e.PackedBlob)
	})
	res.Blobs = r.idx.Len()
	var work []ID
	for id, size := range indexed {
		got, ok := stored[id]
		switch {
		case !ok:
			problem(fmt.Errorf("pack %s is in the index but missing from storage", id))
		case got != size:
			problem(&CorruptError{What: "pack data/" + id.String(), Err: fmt.Errorf("size %d, index says %d (truncated?)", got, size)})
		default:
			work = append(work, id)
		}
	}
	for id := range stored {
		if _, ok := indexed[id]; !ok {
			res.Unreferenced = append(res.Unreferenced, id)
		}
	}
	res.Packs = len(stored)

	// Snapshots and their refs.
	sns, err := r.Snapshots(ctx)
	if err != nil {
		problem(err)
	}
	res.Snapshots = len(sns)
	for _, sn := range sns {
		refs, err := r.LoadRefs(ctx, sn.Refs)
		if err != nil {
			problem(fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err))
			continue
		}
		missing := 0
		hasTree := false
		for _, h := range refs {
			if h.Type == TreeBlob && h.ID == sn.Tree {
				hasTree = true
			}
			if !r.idx.Has(h) {
				missing++
			}
		}
		if !hasTree {
			problem(fmt.Errorf("snapshot %s: its root tree is not in its refs list", sn.ID.Short()))
		}
		if missing > 0 {
			problem(fmt.Errorf("snapshot %s: %d of its %d blobs are not in the index (data lost; restore what remains with --ignore-errors)", sn.ID.Short(), missing, len(refs)))
		}
	}

	// Packs: hash, and with ReadData decrypt every blob.
	slices.SortFunc(work, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan ID)
	g.Go(func() error {
		defer close(ch)
		for _, id := range work {
			select {
			case ch <- id:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for i := 0; i < o.Workers; i++ {
		g.Go(func() error {
			for id := range ch {
				blobs := blobsByPack[id]
				slices.SortFunc(blobs, func(a, b PackedBlob) int { return int(a.Offset) - int(b.Offset) })
				if err := r.checkPack(gctx, id, indexed[id], blobs, o.ReadData); err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					problem(err)
				}
				mu.Lock()
				res.PackBytes += indexed[id]
				mu.Unlock()
				if o.PackDone != nil {
					o.PackDone(indexed[id])
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

func (r *Repository) checkPack(ctx context.Context, id ID, size int64, blobs []PackedBlob, readData bool) error {
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	hasher := sha256.New()
	var blobErrs []error
	err := r.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		hasher.Reset()
		blobErrs = nil
		tee := io.TeeReader(rd, hasher)
		if readData {
			dr, err := age.Decrypt(bufio.NewReaderSize(tee, 1<<20), r.identities...)
			if err != nil {
				blobErrs = append(blobErrs, r.packErr(id, err))
			} else {
				plain, err := io.ReadAll(dr)
				if err != nil {
					blobErrs = append(blobErrs, r.packErr(id, err))
				} else {
					blobErrs = append(blobErrs, r.verifyPlainPack(id, plain, blobs)...)
				}
			}
		}
		_, err := io.Copy(io.Discard, tee)
		return err
	})
	if err != nil {
		return fmt.Errorf("read pack %s: %w", id.Short(), err)
	}
	var sum ID
	hasher.Sum(sum[:0])
	if sum != id {
		return &CorruptError{What: "pack data/" + id.String(), Err: errors.New("content does not match its name (bit rot or tampering); the snapshots using it are damaged")}
	}
	return errors.Join(blobErrs...)
}

func (r *Repository) verifyPlainPack(id ID, plain []byte, indexed []PackedBlob) []error {
	var errs []error
	if len(plain) < packTrailerSize {
		return []error{&CorruptError{What: "pack " + id.Short(), Err: errors.New("too small")}}
	}
	n, err := parsePackTrailer(plain[len(plain)-packTrailerSize:], int64(len(plain)))
	if err != nil {
		return []error{&CorruptError{What: "pack " + id.Short(), Err: err}}
	}
	start := len(plain) - packTrailerSize - n
	header, err := parsePackHeader(plain[start:len(plain)-packTrailerSize], int64(start))
	if err != nil {
		return []error{&CorruptError{What: "pack " + id.Short(), Err: err}}
	}
	inHeader := map[BlobHandle]PackedBlob{}
	var buf []byte
	for _, b := range header {
		inHeader[b.BlobHandle] = b
		data, err := r.decodeBlob(id, b, plain[b.Offset:b.Offset+b.Length], buf)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		buf = data
	}
	for _, b := range indexed {
		if hb, ok := inHeader[b.BlobHandle]; !ok || hb != b {
			errs = append(errs, &CorruptError{What: "pack " + id.Short(), Err: fmt.Errorf("index entry for blob %s does not match the pack header", b.BlobHandle)})
		}
	}
	return errs
}
