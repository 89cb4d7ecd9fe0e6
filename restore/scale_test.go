package restore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

// manyFiles builds dirs×per small files, plus a few 200 kB ones so that
// the data spans several packs.
func manyFiles(t testing.TB, fx *fixture, dirs, per int) *repo.Snapshot {
	var top []repo.Node
	for d := range dirs {
		var files []repo.Node
		for i := range per {
			name := fmt.Sprintf("f%04d.php", i)
			data := []byte(fmt.Sprintf("<?php // module %d file %d\n", d, i))
			if i == 0 {
				data = randBytes(int64(d), 200_000)
			}
			fx.want[fmt.Sprintf("/m/d%03d/%s", d, name)] = data
			files = append(files, fx.file(name, 0o644, data))
		}
		top = append(top, fx.dir(fmt.Sprintf("d%03d", d), 0o755, files...))
	}
	return fx.snapshot(fx.tree(fx.dir("m", 0o755, top...)))
}

func TestManySmallFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("20k files")
	}
	fx := newFixture(t)
	sn := manyFiles(t, fx, 100, 200)
	target := t.TempDir()
	res, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 20_000 || res.Dirs != 101 {
		t.Fatalf("result %+v", res)
	}
	for _, p := range []string{"/m/d000/f0000.php", "/m/d057/f0123.php", "/m/d099/f0199.php", "/m/d042/f0000.php"} {
		equalBytes(t, filepath.Join(target, p), fx.want[p])
	}
	v, err := restore.Verify(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil || !v.OK() || v.Files != 20_000 {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

// cancelAfter cancels a context after n files are done: a restore killed
// midway.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Start(int64, int64)  {}
func (c *cancelAfter) Error(string, error) {}
func (c *cancelAfter) FileDone(string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 {
		c.cancel()
	}
}

func TestInterruptedThenResumed(t *testing.T) {
	fx := newFixture(t)
	sn := manyFiles(t, fx, 10, 50)
	target := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := restore.Restore(ctx, fx.r, sn, restore.Options{Target: target, Progress: &cancelAfter{n: 120, cancel: cancel}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v", err)
	}
	// verify reports the interrupted state honestly
	v, err := restore.Verify(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() {
		t.Fatal("verify of an interrupted restore found no problem")
	}
	res, err := restore.Restore(t.Context(), fx.r, sn, restore.Options{Target: target, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped < 100 || res.Files+res.Skipped != 500 {
		t.Fatalf("resume: %d written, %d skipped", res.Files, res.Skipped)
	}
	v, err = restore.Verify(t.Context(), fx.r, sn, restore.Options{Target: target})
	if err != nil || !v.OK() {
		t.Fatalf("verify after resume: %v %v", err, v.Problems)
	}
	for p, want := range fx.want {
		equalBytes(t, filepath.Join(target, p), want)
	}
}

// BenchmarkRestoreSmallFiles restores 20k small files (and 100 of 200 kB).
func BenchmarkRestoreSmallFiles(b *testing.B) {
	fx := newFixture(b)
	sn := manyFiles(b, fx, 100, 200)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		res, err := restore.Restore(b.Context(), fx.r, sn, restore.Options{Target: filepath.Join(b.TempDir(), fmt.Sprint(i))})
		if err != nil || res.Files != 20_000 {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkVerifySmallFiles verifies 20k small files.
func BenchmarkVerifySmallFiles(b *testing.B) {
	fx := newFixture(b)
	sn := manyFiles(b, fx, 100, 200)
	target := b.TempDir()
	if _, err := restore.Restore(b.Context(), fx.r, sn, restore.Options{Target: target}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		v, err := restore.Verify(b.Context(), fx.r, sn, restore.Options{Target: target})
		if err != nil || !v.OK() {
			b.Fatal(err, v)
		}
	}
}
