package sftp_test

import (
	"context"
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
