package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/schedule"
)

// nightTree writes a small shop whose files change a little each night and
// returns the content of every file.
func nightTree(t *testing.T, root string, night int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for i := 0; i < 40; i++ {
		p := filepath.Join(root, fmt.Sprintf("d%d", i%5), fmt.Sprintf("f%02d.bin", i))
		// every night changes 4 of the 40 files; file 0 grows (a log)
		version := 0
		if i%10 == night%10 {
			version = night
		}
		rnd := rand.New(rand.NewSource(int64(i*1000 + version)))
		data := make([]byte, 20_000+rnd.Intn(60_000))
		rnd.Read(data)
		if i == 0 {
			data = bytes.Repeat([]byte(fmt.Sprintf("night %d order line\n", night)), 2000*(night+1))
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[p] = data
	}
	return files
}

func readSnapshotFile(t *testing.T, r *repo.Repository, sn *repo.Snapshot, p string) []byte {
	t.Helper()
	n, _, err := r.FindNode(t.Context(), sn.Tree, p)
	if err != nil {
		t.Fatalf("snapshot %s: %s: %v", sn.ID.Short(), p, err)
	}
	fr, err := r.NewFileReader(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(fr)
	if err != nil {
		t.Fatalf("snapshot %s: %s: %v", sn.ID.Short(), p, err)
	}
	return data
}

// TestThirtyNightsOfForgetAndPrune simulates a month of nightly backups with
// keep-daily 7 keep-weekly 4, forgetting and pruning with the host key each
// night, then proves every kept snapshot restores byte-identical, check
// --read-data passes, and the repository holds little beyond the live data.
func TestThirtyNightsOfForgetAndPrune(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	hostKey, restoreKey, err := repo.Init(ctx, be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	policy := schedule.Policy{Daily: 7, Weekly: 4}
	start := time.Date(2026, 10, 1, 3, 0, 0, 0, time.UTC)
	content := map[repo.ID]map[string][]byte{} // snapshot -> files
	for night := 0; night < 30; night++ {
		now := start.Add(time.Duration(night) * 24 * time.Hour)
		files := nightTree(t, src, night)
		hr, err := repo.Open(ctx, be, hostKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := hr.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := backup.Run(ctx, hr, backup.Options{Paths: []string{src}, CacheDir: filepath.Join(t.TempDir(), "cache"), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("night %d: %v", night, err)
		}
		content[res.Snapshot.ID] = files
		sns, err := hr.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var in []schedule.Snapshot
		byID := map[string]*repo.Snapshot{}
		for _, s := range sns {
			// the storage's clock agrees with the snapshot's
			in = append(in, schedule.Snapshot{ID: s.ID.String(), Time: s.Time, StoredTime: s.Time, Host: s.Hostname})
			byID[s.ID.String()] = s
		}
		_, remove := schedule.ApplyPolicy(in, policy, now)
		for _, d := range remove {
			if err := hr.RemoveSnapshot(ctx, byID[d.ID]); err != nil {
				t.Fatal(err)
			}
			delete(content, byID[d.ID].ID)
		}
		if _, err := hr.Prune(ctx, repo.PruneOptions{}); err != nil {
			t.Fatalf("night %d prune: %v", night, err)
		}
	}
	rr, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	chk, err := rr.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() {
		t.Fatalf("check --read-data after 30 nights: %v %v", err, chk.Problems)
	}
	sns, _ := rr.Snapshots(ctx)
	if len(sns) != len(content) || len(sns) < 8 || len(sns) > 11 {
		t.Fatalf("%d snapshots kept (%d expected), want 7 daily + up to 4 weekly", len(sns), len(content))
	}
	var live int64
	usedBlobs := map[repo.BlobHandle]bool{}
	for _, sn := range sns {
		for p, want := range content[sn.ID] {
			if got := readSnapshotFile(t, rr, sn, p); !bytes.Equal(got, want) {
				t.Fatalf("snapshot %s: %s differs", sn.ID.Short(), p)
			}
		}
		refs, err := rr.LoadRefs(ctx, sn.Refs)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range refs {
			if !usedBlobs[h] {
				usedBlobs[h] = true
				e, _ := rr.Index().Lookup(h)
				live += int64(e.Length)
			}
		}
	}
	var stored int64
	_ = be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { stored += fi.Size; return nil })
	overhead := float64(stored)/float64(live) - 1
	t.Logf("30 nights: %d snapshots kept, packs %d bytes for %d bytes of live blobs: overhead %.1f%%", len(sns), stored, live, overhead*100)
	// Packs that are partly used stay (the host key cannot repack); age
	// framing adds a little. More than half again the live data would mean
	// prune is not deleting what it should.
	if overhead > 0.5 {
		t.Fatalf("repository holds %.0f%% more than the live data", overhead*100)
	}
}

// TestConcurrentBackupAndPrune runs backups and forget+prune at random
// moments against each other, with the locks the CLI takes; every round
// either side may be refused with a LockedError, but no snapshot may ever
// lose a blob.
func TestConcurrentBackupAndPrune(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	hostKey, restoreKey, err := repo.Init(ctx, be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	var locked, backups, prunes int
	for round := 0; round < 25; round++ {
		// contents cycle through three versions, and prune keeps only the
		// newest snapshot: a version's blobs are deleted and come back, the
		// case where a backup trusting a stale index would lose data
		nightTree(t, src, (round%3)*10)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []error
		fail := func(err error) {
			var le *repo.LockedError
			mu.Lock()
			defer mu.Unlock()
			if errors.As(err, &le) {
				locked++
				return
			}
			failures = append(failures, err)
		}
		delays := []time.Duration{time.Duration(rnd.Intn(20)) * time.Millisecond, time.Duration(rnd.Intn(20)) * time.Millisecond, time.Duration(rnd.Intn(60)) * time.Millisecond}
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(delays[0])
			r, err := repo.Open(ctx, be, hostKey)
			if err == nil {
				err = r.LoadIndex(ctx)
			}
			if err != nil {
				fail(err)
				return
			}
			time.Sleep(delays[2]) // a slow link between reading the index and locking
			lh, err := r.Lock(ctx, repo.LockOptions{})
			if err != nil {
				fail(err)
				return
			}
			defer lh.Unlock(ctx)
			// as the CLI does: the index read before the lock may be stale
			if err := r.ReloadIndex(ctx); err != nil {
				fail(err)
				return
			}
			if _, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}}); err != nil {
				fail(err)
				return
			}
			mu.Lock()
			backups++
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			time.Sleep(delays[1])
			r, err := repo.Open(ctx, be, hostKey)
			if err != nil {
				fail(err)
				return
			}
			lh, err := r.Lock(ctx, repo.LockOptions{Exclusive: true})
			if err != nil {
				fail(err)
				return
			}
			defer lh.Unlock(ctx)
			sns, err := r.Snapshots(ctx)
			if err != nil {
				fail(err)
				return
			}
			for i := 0; i < len(sns)-1; i++ {
				if err := r.RemoveSnapshot(ctx, sns[i]); err != nil {
					fail(err)
					return
				}
			}
			if _, err := r.Prune(ctx, repo.PruneOptions{Now: func() time.Time { return time.Now().Add(2 * repo.OrphanAge) }}); err != nil {
				fail(err)
				return
			}
			mu.Lock()
			prunes++
			mu.Unlock()
		}()
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("round %d: %v", round, errors.Join(failures...))
		}
		rr, _ := repo.Open(ctx, be, restoreKey)
		if err := rr.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		chk, err := rr.Check(ctx, repo.CheckOptions{ReadData: true})
		if err != nil || !chk.OK() {
			t.Fatalf("round %d: a snapshot lost data: %v %v", round, err, chk.Problems)
		}
	}
	t.Logf("25 rounds: %d backups, %d prunes, %d refused by a lock", backups, prunes, locked)
	if backups == 0 || prunes == 0 {
		t.Fatalf("the race never ran both sides: %d backups, %d prunes", backups, prunes)
	}
}
