package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// retries records OnRetry calls.
type retries struct {
	mu   sync.Mutex
	errs []error
}

func (r *retries) record(op string, attempt int, delay time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *retries) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

// A server that stops answering without closing the connection (a dead
// link) is detected by the keepalive; the operation is retried on a new
// connection once the server answers again.
func TestKeepAliveDropsSilentConnection(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 1)
	cfg.KeepAlive = 200 * time.Millisecond
	cfg.DialTimeout = time.Second
	var rs retries
	cfg.OnRetry = rs.record
	ctx := t.Context()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	h := backend.Handle{Type: backend.SnapshotFile, Name: "abcd"}
	if err := be.Save(ctx, h, bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	s.Freeze()
	done := make(chan error, 1)
	go func() {
		_, err := be.Stat(ctx, h)
		done <- err
	}()
	// Without a keepalive the Stat would wait on the frozen connection;
	// with it the connection is dropped and redialled (and the redial
	// times out while the server stays frozen).
	deadline := time.Now().Add(30 * time.Second)
	for rs.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s.Thaw()
	if err := <-done; err != nil {
		t.Fatalf("stat after the server answered again: %v", err)
	}
	if rs.count() == 0 {
		t.Fatal("the silent connection was never dropped and retried")
	}
}

// Cancelling a Save (Ctrl-C) returns promptly and leaves no file, not even
// a temporary one.
func TestSaveCancelled(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 1)
	cfg.LimitUploadKiB = 256 // 4 MiB would take 16 s
	ctx, cancel := context.WithCancel(t.Context())
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	data := make([]byte, 4<<20)
	h := backend.Handle{Type: backend.PackFile, Name: "ab0011"}
	time.AfterFunc(300*time.Millisecond, cancel)
	err = be.Save(ctx, h, bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled save: got %v, want context.Canceled", err)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Path, "data", "ab", "*"))
	if len(left) != 0 {
		t.Fatalf("a cancelled save left %v", left)
	}
}

// manualClock advances only when slept on, so the limiter's sleeps add up
// to exactly what the rate demands.
type manualClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return ctx.Err()
}

func (c *manualClock) take() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.slept
	c.slept = 0
	return d
}

func TestBandwidthLimit(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := config(t, s, 2)
	clk := &manualClock{t: time.Unix(0, 0)}
	cfg.Now, cfg.Sleep = clk.now, clk.sleep
	cfg.LimitUploadKiB, cfg.LimitDownloadKiB = 512, 1024
	ctx := t.Context()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	const size = 4 << 20
	data := make([]byte, size)
	h := backend.Handle{Type: backend.PackFile, Name: "cd0011"}
	clk.take()
	if err := be.Save(ctx, h, bytes.NewReader(data), size); err != nil {
		t.Fatal(err)
	}
	// 4 MiB at 512 KiB/s is 8 s, less the initial burst of a quarter second.
	if up := clk.take(); up < 7500*time.Millisecond || up > 8*time.Second {
		t.Fatalf("uploading 4 MiB at 512 KiB/s slept %s, want about 7.75s", up)
	}
	err = be.Load(ctx, h, 0, 0, func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if down := clk.take(); down < 3500*time.Millisecond || down > 4*time.Second {
		t.Fatalf("downloading 4 MiB at 1024 KiB/s slept %s, want about 3.75s", down)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Path, backend.Path(h))); err != nil || fi.Size() != size {
		t.Fatalf("saved file: %v %v", fi, err)
	}
}
