package sftp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// config returns a Config for a fresh repository directory on s.
func config(t testing.TB, s *sshdtest.Server, conns int) sftp.Config {
	t.Helper()
	cfg, err := sftp.ParseURL(s.URL(filepath.Join(s.Root, t.Name(), "repo")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = s.ClientKeyPath
	cfg.KnownHostsFile = s.KnownHostsPath
	cfg.Connections = conns
	cfg.Retry = sftp.RetryPolicy{Initial: 50 * time.Millisecond, Max: time.Second, MaxElapsed: 20 * time.Second}
	return cfg
}

func TestSuite(t *testing.T) {
	s := sshdtest.Start(t)
	backendtest.RunSuite(t, func(t *testing.T) backend.Backend {
		be, err := sftp.Create(context.Background(), config(t, s, 2))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = be.Close() })
		return be
	})
}

// A repository written by the local backend is readable over SFTP: the
// layouts are the same.
func TestLayoutMatchesLocal(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 1)
	ctx := context.Background()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	h := backend.Handle{Type: backend.PackFile, Name: "ab12cd"}
	data := []byte("pack bytes")
	if err := be.Save(ctx, h, bytesReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(cfg.Path, "data", "ab", "ab12cd")
	got := readFile(t, want)
	if string(got) != string(data) {
		t.Fatalf("%s holds %q, want %q", want, got, data)
	}
}

// List sees every pack of a large repository (several READDIR batches per
// shard, all 256 shards) and skips temporary files.
func TestListManyPacks(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 4)
	ctx := context.Background()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	want := map[string]int64{}
	for i := 0; i < 2500; i++ {
		name := fmt.Sprintf("%02x%06d", i%256, i)
		if i >= 2000 {
			name = fmt.Sprintf("ff%06d", i) // one big shard
		}
		h := backend.Handle{Type: backend.PackFile, Name: name}
		p := filepath.Join(cfg.Path, filepath.FromSlash(backend.Path(h)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, i%7), 0o600); err != nil {
			t.Fatal(err)
		}
		want[name] = int64(i % 7)
	}
	if err := os.WriteFile(filepath.Join(cfg.Path, "data", "ff", ".tmp-ff1-abc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	listStart := time.Now()
	defer func() { t.Logf("listing %d packs took %s", len(want), time.Since(listStart)) }()
	err = be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if _, dup := got[fi.Name]; dup {
			return fmt.Errorf("%s listed twice", fi.Name)
		}
		got[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d packs, want %d", len(got), len(want))
	}
	for n, sz := range want {
		if got[n] != sz {
			t.Fatalf("%s: listed size %d, want %d (present %v)", n, got[n], sz, got[n] == sz)
		}
	}
	// Stopping early returns the callback's error and does not hang.
	stop := errors.New("stop")
	calls := 0
	err = be.List(ctx, backend.PackFile, func(backend.FileInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("early stop: err %v after %d calls", err, calls)
	}
}

func TestRemoveStaleTemp(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 2)
	ctx := context.Background()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	old := time.Now().Add(-48 * time.Hour)
	write := func(rel string, mtime time.Time) string {
		p := filepath.Join(cfg.Path, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := []string{
		write("data/ab/"+sftp.TempPrefix+"ab12-1", old),
		write("index/"+sftp.TempPrefix+"ii-2", old),
		write(sftp.TempPrefix+"config-3", old),
	}
	keep := []string{
		write("data/ab/"+sftp.TempPrefix+"ab34-4", time.Now()), // maybe a Save in progress elsewhere
		write("data/ab/ab56", old),                             // a pack, however old
		write("snapshots/.other", old),                         // not ours
	}
	n, err := be.RemoveStaleTemp(ctx, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Errorf("removed %d, want %d", n, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
