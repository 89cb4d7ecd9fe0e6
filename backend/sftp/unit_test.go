package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"

	"github.com/shopvault/shopvault/backend"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    Config
		wantErr string
	}{
		{in: "sftp://u123456@u123456.your-storagebox.de/shopvault", want: Config{User: "u123456", Host: "u123456.your-storagebox.de", Port: 23, Path: "/shopvault"}},
		{in: "sftp://u1@U1.YOUR-STORAGEBOX.DE/x", want: Config{User: "u1", Host: "U1.YOUR-STORAGEBOX.DE", Port: 23, Path: "/x"}},
		{in: "sftp://u1@u1.your-storagebox.de:22/x", want: Config{User: "u1", Host: "u1.your-storagebox.de", Port: 22, Path: "/x"}},
		{in: "sftp://root@backup.example.com/srv/repo/", want: Config{User: "root", Host: "backup.example.com", Port: 22, Path: "/srv/repo"}},
		{in: "sftp://root@127.0.0.1:2222/a/b/../c", want: Config{User: "root", Host: "127.0.0.1", Port: 2222, Path: "/a/c"}},
		{in: "sftp://me@[::1]:2200/r", want: Config{User: "me", Host: "::1", Port: 2200, Path: "/r"}},
		{in: "sftp://me@host/~/repo", want: Config{User: "me", Host: "host", Port: 22, Path: "repo"}},
		{in: "sftp://me@host/~/a/b", want: Config{User: "me", Host: "host", Port: 22, Path: "a/b"}},
		{in: "/srv/repo", wantErr: "not sftp"},
		{in: "s3://bucket/x", wantErr: "not sftp"},
		{in: "sftp://host/repo", wantErr: "no user"},
		{in: "sftp://u:secret@host/repo", wantErr: "passwords in the URL are not supported"},
		{in: "sftp://u@host", wantErr: "no repository path"},
		{in: "sftp://u@host/", wantErr: "no repository path"},
		{in: "sftp://u@host/..", wantErr: "no repository path"},
		{in: "sftp://u@host/~", wantErr: "below the login directory"},
		{in: "sftp://u@host/~/..", wantErr: "below the login directory"},
		{in: "sftp://u@host:0/r", wantErr: "invalid port"},
		{in: "sftp://u@host:70000/r", wantErr: "invalid port"},
		{in: "sftp://u@host:ab/r", wantErr: "invalid port"},
		{in: "sftp://u@host:/r", wantErr: "empty port"},
		{in: "sftp://u@host/r?x=1", wantErr: "query"},
		{in: "sftp:u@host/r", wantErr: "no host"},
		{in: "sftp://u@/r", wantErr: "no host"},
		{in: "sftp://u@host/r\x00", wantErr: "invalid"},
		{in: "sftp://u@host/a%00b", wantErr: "control characters"},
		{in: "sftp://u@::1/r", wantErr: "invalid host"},
		{in: "sftp://u@ho$t/r", wantErr: "invalid host"},
		{in: "sftp://u@host/a%23b", want: Config{User: "u", Host: "host", Port: 22, Path: "/a#b"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if got.User != tt.want.User || got.Host != tt.want.Host || got.Port != tt.want.Port || got.Path != tt.want.Path {
				t.Fatalf("ParseURL(%q) = %s@%s:%d %q, want %s@%s:%d %q", tt.in, got.User, got.Host, got.Port, got.Path,
					tt.want.User, tt.want.Host, tt.want.Port, tt.want.Path)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	base := Config{User: "u", Host: "h.your-storagebox.de", Path: "/r"}
	c, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 23 || c.Connections != DefaultConnections || c.KeepAlive != DefaultKeepAlive {
		t.Fatalf("defaults: port %d, connections %d, keepalive %s", c.Port, c.Connections, c.KeepAlive)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Connections = MaxConnections + 1 },
		func(c *Config) { c.Connections = -1 },
		func(c *Config) { c.AcceptHostKey = "MD5:aa:bb" },
		func(c *Config) { c.LimitUploadKiB = -5 },
		func(c *Config) { c.Host = "" },
		func(c *Config) { c.User = "" },
	} {
		c := base
		bad(&c)
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if got := (Config{User: "u", Host: "h", Port: 23, Path: "rel"}).Location(); got != "sftp://u@h:23/~/rel" {
		t.Errorf("Location of a home-relative path = %q", got)
	}
}

// fakeClock is a manual clock whose Sleep advances time.
type fakeClock struct {
	t      time.Time
	slept  []time.Duration
	cancel bool
}

func (f *fakeClock) now() time.Time { return f.t }
func (f *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	f.slept = append(f.slept, d)
	f.t = f.t.Add(d)
	return ctx.Err()
}

func TestTokenBucket(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ctx := context.Background()
	if newTokenBucket(0, clk.now, clk.sleep) != nil {
		t.Fatal("a zero limit must mean no bucket")
	}
	var none *tokenBucket
	if err := none.wait(ctx, 1<<30); err != nil {
		t.Fatal(err)
	}
	b := newTokenBucket(128, clk.now, clk.sleep) // 128 KiB/s, burst 32 KiB
	if err := b.wait(ctx, 32*1024); err != nil {
		t.Fatal(err)
	}
	if len(clk.slept) != 0 {
		t.Fatalf("the burst must pass without sleeping, slept %v", clk.slept)
	}
	// 64 KiB more at 128 KiB/s: half a second of debt.
	if err := b.wait(ctx, 64*1024); err != nil {
		t.Fatal(err)
	}
	if len(clk.slept) != 1 || clk.slept[0] != 500*time.Millisecond {
		t.Fatalf("slept %v, want [500ms]", clk.slept)
	}
	// Over a long transfer the average rate is the limit.
	clk.slept = nil
	start := clk.t
	total := 0
	for i := 0; i < 100; i++ {
		n := 10_000 + i*977%50_000
		total += n
		if err := b.wait(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	el := clk.t.Sub(start).Seconds()
	rate := float64(total) / el / 1024
	if rate > 128*1.01 || rate < 128*0.9 {
		t.Fatalf("average rate %.1f KiB/s over %.1fs, want about 128", rate, el)
	}
	// Idle time refills at most the burst.
	clk.t = clk.t.Add(time.Hour)
	clk.slept = nil
	if err := b.wait(ctx, 32*1024+128*1024); err != nil {
		t.Fatal(err)
	}
	if len(clk.slept) != 1 || clk.slept[0] != time.Second {
		t.Fatalf("after idling, slept %v, want [1s] (burst capped)", clk.slept)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.wait(cctx, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a cancelled context: %v", err)
	}
}

func TestClassify(t *testing.T) {
	// Each case gets its own connection: classify closes a lost one.
	const live, dead = false, true
	status := func(code uint32) error { return &pkgsftp.StatusError{Code: code} }
	tests := []struct {
		name      string
		dead      bool
		err       error
		transient bool
		permanent bool
		notExist  bool
	}{
		{"connection lost", live, pkgsftp.ErrSSHFxConnectionLost, true, false, false},
		{"no connection status", live, status(6), true, false, false},
		{"eof from transport", live, io.EOF, true, false, false},
		{"reset", live, &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true, false, false},
		{"closed pipe", live, fmt.Errorf("write: %w", io.ErrClosedPipe), true, false, false},
		{"dead connection, odd error", dead, errors.New("something"), true, false, false},
		{"not exist", live, os.ErrNotExist, false, false, true},
		{"permission", live, os.ErrPermission, false, true, false},
		{"generic failure", live, status(4), false, false, false},
		{"bad message", live, status(5), false, false, false},
		{"plain error", live, errors.New("boom"), false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{dead: make(chan struct{})}
			if tt.dead {
				c.close()
			}
			got := classify(c, "op", tt.err)
			if tt.transient != c.isDead() {
				t.Errorf("connection closed = %v after %v, want %v", c.isDead(), tt.err, tt.transient)
			}
			if isTransient(got) != tt.transient || errors.Is(got, backend.ErrPermanent) != tt.permanent || errors.Is(got, fs.ErrNotExist) != tt.notExist {
				t.Fatalf("classify(%v) = %v: transient %v permanent %v notexist %v", tt.err, got,
					isTransient(got), errors.Is(got, backend.ErrPermanent), errors.Is(got, fs.ErrNotExist))
			}
		})
	}
	if isTransient(backend.Permanent(transient(errors.New("x")))) {
		t.Error("a permanent error must not be retried even if it wraps a transient one")
	}
	if isTransient(transient(context.Canceled)) {
		t.Error("cancellation must not be retried")
	}
}

// newTestBackend returns a Backend whose pool dials with dial.
func newTestBackend(clk *fakeClock, dial func(context.Context) (*conn, error)) *Backend {
	cfg, _ := Config{User: "u", Host: "h", Path: "/r", Now: clk.now, Sleep: clk.sleep,
		Retry: RetryPolicy{Initial: time.Second, Max: 4 * time.Second, MaxElapsed: 30 * time.Second}}.withDefaults()
	return &Backend{cfg: cfg, root: "/r", pool: newPool(2, dial)}
}

func TestRetryBackoff(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(0, 0)}
	dials := 0
	b := newTestBackend(clk, func(context.Context) (*conn, error) {
		dials++
		if dials <= 3 {
			return nil, transient(errors.New("connection refused"))
		}
		return &conn{dead: make(chan struct{})}, nil
	})
	calls := 0
	err := b.retry(ctx, "op", func(c *conn, attempt int) error {
		calls++
		if attempt != 4+calls-1 {
			t.Errorf("attempt %d on call %d", attempt, calls)
		}
		if calls == 1 {
			return transient(errors.New("lost"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(clk.slept) != "[1s 2s 4s 4s]" {
		t.Fatalf("backoff delays %v, want [1s 2s 4s 4s]", clk.slept)
	}

	// A permanent error is returned at once, without sleeping.
	clk.slept = nil
	perm := backend.Permanent(errors.New("permission denied"))
	calls = 0
	err = b.retry(ctx, "op", func(*conn, int) error { calls++; return perm })
	if !errors.Is(err, backend.ErrPermanent) || calls != 1 || len(clk.slept) != 0 {
		t.Fatalf("permanent: err %v after %d calls, slept %v", err, calls, clk.slept)
	}
	// Not-exist is not retried either.
	calls = 0
	err = b.retry(ctx, "op", func(*conn, int) error { calls++; return fmt.Errorf("x: %w", fs.ErrNotExist) })
	if !backend.IsNotExist(err) || calls != 1 {
		t.Fatalf("not-exist: err %v after %d calls", err, calls)
	}

	// A transient error forever gives up after MaxElapsed.
	clk.slept = nil
	calls = 0
	err = b.retry(ctx, "op", func(*conn, int) error { calls++; return transient(errors.New("lost")) })
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("endless transient failure: %v", err)
	}
	var total time.Duration
	for _, d := range clk.slept {
		total += d
	}
	if total > 30*time.Second || calls < 5 {
		t.Fatalf("gave up after %d calls and %s of sleep", calls, total)
	}

	// Cancellation stops the loop.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = b.retry(cctx, "op", func(*conn, int) error { calls++; cancel(); return transient(errors.New("lost")) })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("cancelled: err %v after %d calls", err, calls)
	}
}

func TestKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "id")
	if err := os.WriteFile(p, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadAuth(Config{KeyFile: p})
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !errors.Is(err, backend.ErrPermanent) {
		t.Fatalf("0644 key: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadAuth(Config{KeyFile: p})
	if err == nil || !strings.Contains(err.Error(), "not an OpenSSH") {
		t.Fatalf("garbage key: %v", err)
	}
	_, err = loadAuth(Config{KeyFile: filepath.Join(dir, "missing")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
}

// TestPoolWarm: warm dials the idle slots in the background, and while
// they dial, get shares the live connection instead of waiting for a
// handshake; once they are up, operations spread over them.
func TestPoolWarm(t *testing.T) {
	release := make(chan struct{})
	var dials atomic.Int32
	p := newPool(3, func(ctx context.Context) (*conn, error) {
		if dials.Add(1) > 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &conn{dead: make(chan struct{})}, nil
	})
	defer p.close()
	ctx := context.Background()
	s0, first, err := p.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.put(s0)
	readyc := make(chan *conn, 3)
	p.warm(func(c *conn) { readyc <- c })
	// Two operations at once while the other slots are still dialing:
	// both run on the live connection.
	type op struct {
		s *slot
		c *conn
	}
	got := make(chan op, 2)
	go func() {
		for i := 0; i < 2; i++ {
			s, c, err := p.get(ctx) // blocks if it picks a slot being dialed
			if err != nil {
				c = nil
			}
			got <- op{s, c} // held until the test ends
		}
	}()
	for i := 0; i < 2; i++ {
		select {
		case o := <-got:
			defer p.put(o.s)
			c := o.c
			if c != first {
				t.Fatalf("operation %d got %p, want the live connection", i, c)
			}
		case <-time.After(5 * time.Second):
			close(release)
			t.Fatalf("operation %d waited for a handshake instead of sharing the live connection", i)
		}
	}
	close(release)
	warmed := map[*conn]bool{}
	for len(warmed) < 2 {
		select {
		case c := <-readyc:
			if c == first {
				t.Fatal("warm reported the connection that was already up")
			}
			warmed[c] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("warm made %d of 2 connections", len(warmed))
		}
	}
	if n := dials.Load(); n != 3 {
		t.Fatalf("%d dials, want 3 (one per slot)", n)
	}
	s, c, err := p.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.put(s)
	if !warmed[c] {
		t.Fatal("with two operations on the first connection, the next one did not go to a warmed one")
	}
}
