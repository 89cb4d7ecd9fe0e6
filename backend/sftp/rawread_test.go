package sftp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// rawTestBackend opens a backend with one connection on s and writes a pack
// of n random bytes straight into the server's directory.
func rawTestBackend(t *testing.T, s *sshdtest.Server, n int) (*Backend, backend.Handle, []byte, string) {
	t.Helper()
	cfg := testConfig(t, s, filepath.Join(s.Root, "repo"), 1)
	be, err := Create(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	data := make([]byte, n)
	rnd := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	h := backend.Handle{Type: backend.PackFile, Name: "0011223344"}
	name := filepath.Join(cfg.Path, "data", "00", h.Name)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return be, h, data, name
}

// testConfig is a Config for the repository at dir on s, with conns
// connections and quick retries.
func testConfig(t *testing.T, s *sshdtest.Server, dir string, conns int) Config {
	t.Helper()
	cfg, err := ParseURL(s.URL(dir))
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = s.ClientKeyPath
	cfg.KnownHostsFile = s.KnownHostsPath
	cfg.Connections = conns
	cfg.Retry = RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, MaxElapsed: 5 * time.Second}
	return cfg
}

// rawSessionOf returns the read session of the backend's one connection
// (nil if it has none).
func rawSessionOf(t *testing.T, be *Backend) *rawSession {
	t.Helper()
	_, c, err := be.pool.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer be.pool.put(be.pool.slots[0])
	return c.rawReader()
}

func loadRange(be *Backend, h backend.Handle, off, length int64, readSize int) ([]byte, error) {
	var got []byte
	err := be.Load(context.Background(), h, off, length, func(r io.Reader) error {
		got = got[:0]
		buf := make([]byte, readSize)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	return got, err
}

// Ranges of every shape come back byte for byte, through the read session
// (with OpenSSH's 255 KiB reads) and, on a server that allows one session
// per connection, through pkg/sftp.
func TestRawRangesMatchFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sshdtest.Option
		raw  bool
	}{
		{"read session", nil, true},
		{"MaxSessions 1: pkg/sftp", []sshdtest.Option{sshdtest.WithConfig("MaxSessions 1")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sshdtest.Start(t, tc.opts...)
			size := 3<<20 + 12345
			be, h, data, _ := rawTestBackend(t, s, size)
			ranges := [][2]int64{
				{0, 0}, {0, 1}, {0, int64(size)}, {int64(size) - 1, 1}, {5, 0},
				{32<<10 - 3, 7}, {255<<10 - 1, 2}, {256<<10 - 1, 2}, {1 << 20, 3 << 19},
			}
			rnd := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				off := rnd.Int64N(int64(size))
				ranges = append(ranges, [2]int64{off, rnd.Int64N(int64(size)-off) + 1})
			}
			for i, rg := range ranges {
				got, err := loadRange(be, h, rg[0], rg[1], 1+i*4099%70000)
				if err != nil {
					t.Fatalf("range %d+%d: %v", rg[0], rg[1], err)
				}
				want := data[rg[0]:]
				if rg[1] > 0 {
					want = want[:rg[1]]
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("range %d+%d: %d bytes differ from the file's %d", rg[0], rg[1], len(got), len(want))
				}
			}
			rs := rawSessionOf(t, be)
			if (rs != nil) != tc.raw {
				t.Fatalf("read session in use: %v, want %v", rs != nil, tc.raw)
			}
			if rs != nil && rs.readSize <= rawMinRead {
				t.Fatalf("OpenSSH offers limits@openssh.com, but reads are %d bytes", rs.readSize)
			}
		})
	}
}

// A range beyond the file's end, and a range of a file that shrinks while it
// is read, end in an error at once (no retries: the connection is fine),
// never as a clean EOF.
func TestRawShortFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sshdtest.Option
	}{
		{"read session", nil},
		{"MaxSessions 1: pkg/sftp", []sshdtest.Option{sshdtest.WithConfig("MaxSessions 1")}},
	} {
		t.Run(tc.name, func(t *testing.T) { testShortFile(t, sshdtest.Start(t, tc.opts...)) })
	}
}

func testShortFile(t *testing.T, s *sshdtest.Server) {
	size := 16<<20 + 99 // well beyond the reads in flight
	be, h, _, name := rawTestBackend(t, s, size)
	var retried atomic.Int32
	be.cfg.OnRetry = func(string, int, time.Duration, error) { retried.Add(1) }

	if _, err := loadRange(be, h, int64(size)-10, 11, 4096); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("range past the end: %v, want ErrUnexpectedEOF", err)
	}
	err := be.Load(t.Context(), h, 0, int64(size), func(r io.Reader) error {
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			return err
		}
		if err := os.Truncate(name, 1<<20); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("file truncated under the read: %v, want ErrUnexpectedEOF", err)
	}
	if n := retried.Load(); n != 0 {
		t.Fatalf("%d retries for a short file", n)
	}
	// A whole-file load reads to the end the file has now.
	got, err := loadRange(be, h, 0, 0, 1<<16)
	if err != nil || len(got) != 1<<20 {
		t.Fatalf("whole file after the truncation: %d bytes, %v; want %d", len(got), err, 1<<20)
	}
}

// Readers that stop early, fail, or run concurrently on one connection never
// see another read's bytes (buffers are reused only once their reads are
// answered), and the read session keeps working.
func TestRawConcurrentAndAbandonedReads(t *testing.T) {
	s := sshdtest.Start(t)
	size := 4<<20 + 1
	be, h, data, _ := rawTestBackend(t, s, size)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 3))
			for range 12 {
				off := rnd.Int64N(int64(size) - 1)
				n := rnd.Int64N(int64(size)-off) + 1
				stopAt := rnd.Int64N(n + 1)
				ctx, cancel := context.WithCancel(context.Background())
				errStop := errors.New("stop")
				err := be.Load(ctx, h, off, n, func(r io.Reader) error {
					buf := make([]byte, stopAt)
					if _, err := io.ReadFull(r, buf); err != nil {
						return err
					}
					if !bytes.Equal(buf, data[off:off+stopAt]) {
						return errors.New("bytes differ")
					}
					if g%3 == 0 {
						// After a cancel the reader may still hand out what
						// had arrived, but never wrong bytes or a silent end.
						cancel()
						rest, err := io.ReadAll(r)
						if err != nil && !errors.Is(err, context.Canceled) {
							return err
						}
						if !bytes.Equal(rest, data[off+stopAt:off+stopAt+int64(len(rest))]) {
							return errors.New("bytes after the cancel differ")
						}
						if err == nil && int64(len(rest)) != n-stopAt {
							return errors.New("reader ended early without an error after the cancel")
						}
					}
					return errStop
				})
				cancel()
				if !errors.Is(err, errStop) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := loadRange(be, h, 0, 0, 1<<16)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole file after the abandoned reads: %d bytes, %v", len(got), err)
	}
	if rawSessionOf(t, be) == nil {
		t.Fatal("the read session was given up")
	}
}

// The server killed in the middle of a read: the load is retried on a new
// connection and fn sees the whole range.
func TestRawReadSurvivesServerRestart(t *testing.T) {
	s := sshdtest.Start(t)
	size := 3 << 20
	be, h, data, _ := rawTestBackend(t, s, size)
	var once sync.Once
	var got []byte
	calls := 0
	err := be.Load(t.Context(), h, 0, int64(size), func(r io.Reader) error {
		calls++
		b, err := io.ReadAll(io.TeeReader(r, writerFunc(func(p []byte) {
			once.Do(func() { s.Restart(t) })
		})))
		got = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 {
		t.Fatalf("fn called %d times, want a retry after the restart", calls)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes after the retry differ from the file", len(got))
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// Cancelling a load while the server has stopped answering returns at once;
// it does not wait for the reads still out (the keepalive would take much
// longer to give up on the connection).
func TestRawCancelWithSilentServer(t *testing.T) {
	s := sshdtest.Start(t)
	size := 16 << 20
	be, h, _, _ := rawTestBackend(t, s, size)
	be.cfg.KeepAlive = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	var frozeAt time.Time
	err := be.Load(ctx, h, 0, int64(size), func(r io.Reader) error {
		if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
			return err
		}
		s.Freeze()
		frozeAt = time.Now()
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := io.Copy(io.Discard, r)
		return err
	})
	s.Thaw()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("load cancelled with the server frozen: %v, want context.Canceled", err)
	}
	if d := time.Since(frozeAt); d > 5*time.Second {
		t.Fatalf("the cancelled load returned %s after the server froze (started %s ago)", d, time.Since(start))
	}
}
