package sftp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// benchFiles files of benchSize bytes are moved per benchmark op, by as
// many goroutines, over a pool of 1 or 4 connections to a loopback sshd.
const (
	benchFiles = 8
	benchSize  = 32 << 20
)

func benchData(b *testing.B) ([][]byte, []backend.Handle) {
	b.Helper()
	var data [][]byte
	var hs []backend.Handle
	for i := 0; i < benchFiles; i++ {
		d := make([]byte, benchSize)
		if _, err := rand.Read(d); err != nil {
			b.Fatal(err)
		}
		sum := sha256.Sum256(d)
		data = append(data, d)
		hs = append(hs, backend.Handle{Type: backend.PackFile, Name: hex.EncodeToString(sum[:])})
	}
	return data, hs
}

func parallel(b *testing.B, n int, fn func(i int) error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveLoad measures raw Save and Load throughput of 32 MiB files.
// The sshd writes into os.TempDir (set TMPDIR to choose the disk).
//
// To measure over an emulated WAN, either set SFTP_BENCH_DELAY=10ms (a
// userspace proxy delays every byte by that much in each direction), or
// create a network namespace with a veth pair and netem delay and set
// SFTP_BENCH_NETNS=<name> and SFTP_BENCH_ADDR=<the namespace's address>;
// sshd then runs inside it.
func BenchmarkSaveLoad(b *testing.B) {
	var opts []sshdtest.Option
	if ns := os.Getenv("SFTP_BENCH_NETNS"); ns != "" {
		opts = append(opts, sshdtest.WithWrapper("ip", "netns", "exec", ns), sshdtest.WithListenAddress(os.Getenv("SFTP_BENCH_ADDR")))
	}
	s := sshdtest.Start(b, opts...)
	var proxy *tcpProxy
	if d := os.Getenv("SFTP_BENCH_DELAY"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil {
			b.Fatalf("SFTP_BENCH_DELAY: %v", err)
		}
		proxy = startDelayProxy(b, s.Addr, delay)
	}
	data, hs := benchData(b)
	ctx := context.Background()
	for _, conns := range []int{1, 4} {
		cfg := config(b, s, conns)
		if proxy != nil {
			proxy.via(b, &cfg, s)
		}
		cfg.Path = fmt.Sprintf("%s/bench-%d", s.Root, conns)
		be, err := sftp.Create(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("Save/conns=%d", conns), func(b *testing.B) {
			b.SetBytes(benchFiles * benchSize)
			for i := 0; i < b.N; i++ {
				parallel(b, benchFiles, func(j int) error {
					return be.Save(ctx, hs[j], bytes.NewReader(data[j]), benchSize)
				})
			}
		})
		b.Run(fmt.Sprintf("Load/conns=%d", conns), func(b *testing.B) {
			b.SetBytes(benchFiles * benchSize)
			for i := 0; i < b.N; i++ {
				parallel(b, benchFiles, func(j int) error {
					return be.Load(ctx, hs[j], 0, 0, func(r io.Reader) error {
						n, err := io.Copy(io.Discard, r)
						if err == nil && n != benchSize {
							err = fmt.Errorf("loaded %d bytes", n)
						}
						return err
					})
				})
			}
		})
		_ = be.Close()
		_ = os.RemoveAll(cfg.Path)
	}
}

// startDelayProxy forwards TCP connections to target, delaying every byte
// by a fixed time in each direction: a crude WAN without netem.
func startDelayProxy(b *testing.B, target string, delay time.Duration) *tcpProxy {
	return startProxy(b, target, func(c, up net.Conn) {
		go delayCopy(up, c, delay)
		delayCopy(c, up, delay)
	})
}

func delayCopy(dst, src net.Conn, delay time.Duration) {
	type packet struct {
		due  time.Time
		data []byte
	}
	q := make(chan packet, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- packet{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for p := range q {
		time.Sleep(time.Until(p.due))
		if _, err := dst.Write(p.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}
