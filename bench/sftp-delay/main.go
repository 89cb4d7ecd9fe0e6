// Command sftp-delay is a userspace TCP relay that adds a fixed one-way delay
// to every byte in both directions: a crude WAN for bench/sftp.sh on kernels
// without sch_netem (tc qdisc … netem fails there).
//
//	sftp-delay -target 127.0.0.1:2222 -delay 10ms [-listen 127.0.0.1:0]
//
// It prints the address it listens on as the first line of stdout and serves
// until SIGINT/SIGTERM. Only 127.0.0.1 addresses are accepted on both sides:
// it is a benchmark tool, never a relay to the outside.
//
// What it models: latency only. Bytes are read from one side as soon as they
// arrive and written to the other side when they are delay old, so the round
// trip of a request/response exchange grows by 2×delay (10ms each way = 20 ms
// RTT) while bandwidth is not limited (the relay buffers up to -buffer bytes
// per direction, a large window). Senders that keep many requests in flight
// therefore hide the delay, one-at-a-time senders pay it per exchange — which
// is exactly what the SFTP benchmark wants to show.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sftp-delay:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sftp-delay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (127.0.0.1 only)")
	target := fs.String("target", "", "address to forward to, e.g. 127.0.0.1:2222 (127.0.0.1 only)")
	delay := fs.Duration("delay", 10*time.Millisecond, "one-way delay added in each direction")
	buffer := fs.Int("buffer", 64<<20, "bytes in flight per direction before the relay stops reading")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return errors.New("missing -target (e.g. -target 127.0.0.1:2222)")
	}
	for _, a := range []string{*listen, *target} {
		if err := loopbackOnly(a); err != nil {
			return err
		}
	}
	if *delay < 0 || *buffer < 64<<10 {
		return fmt.Errorf("-delay must be >= 0 and -buffer >= 65536 (got %s, %d)", *delay, *buffer)
	}
	p := &proxy{target: *target, delay: *delay, buffer: *buffer}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	fmt.Fprintln(stdout, l.Addr().String())
	return p.serve(ctx, l)
}

// loopbackOnly refuses any address whose host is not 127.0.0.1.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w (want 127.0.0.1:PORT)", addr, err)
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("address %q: only 127.0.0.1 is allowed (benchmark relay)", addr)
	}
	return nil
}

// proxy relays every accepted connection to target with delay added each way.
type proxy struct {
	target string
	delay  time.Duration
	buffer int
}

// serve accepts until ctx is done, then closes the listener and every open
// relay and waits for their goroutines.
func (p *proxy) serve(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	go func() { <-ctx.Done(); _ = l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.relay(ctx, c) }()
	}
}

// relay connects to the target and copies both directions until both have
// ended (EOF or error) or ctx is done.
func (p *proxy) relay(ctx context.Context, c net.Conn) {
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	finished := make(chan struct{})
	go func() { // ctx done: tear both sides down
		select {
		case <-ctx.Done():
			_ = c.Close()
			_ = up.Close()
		case <-finished:
		}
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); delayCopy(up.(*net.TCPConn), c.(*net.TCPConn), p.delay, p.buffer) }()
	go func() { defer wg.Done(); delayCopy(c.(*net.TCPConn), up.(*net.TCPConn), p.delay, p.buffer) }()
	wg.Wait()
	close(finished)
	_ = c.Close()
	_ = up.Close()
}

// delayCopy reads src as fast as it arrives (up to buffer bytes in flight) and
// writes each piece to dst once it is delay old. At EOF of src it half-closes
// dst after the last piece so that the peer sees the end in order.
//
// The relay's own CPU competes with the tools measured on the same cores, so
// it is kept small: buffers are reused, and every piece already due when the
// writer wakes goes out in one writev (a sleep and a write per piece cost
// about 2.5 ns per relayed byte; a real link costs the endpoints nothing).
func delayCopy(dst, src *net.TCPConn, delay time.Duration, buffer int) {
	type piece struct {
		due  time.Time
		data []byte
	}
	const chunk = 256 << 10
	q := make(chan piece, max(buffer/chunk, 1))
	free := make(chan []byte, cap(q)+1)
	go func() {
		defer close(q)
		for {
			var buf []byte
			select {
			case buf = <-free:
			default:
				buf = make([]byte, chunk)
			}
			n, err := src.Read(buf[:chunk])
			if n > 0 {
				q <- piece{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	var (
		batch  []piece
		bufs   net.Buffers
		held   *piece // taken from q but not due yet
		closed bool
	)
	for !closed {
		var pc piece
		if held != nil {
			pc, held = *held, nil
		} else {
			var ok bool
			if pc, ok = <-q; !ok {
				break
			}
		}
		time.Sleep(time.Until(pc.due))
		batch = append(batch[:0], pc)
	drain:
		for {
			select {
			case p, ok := <-q:
				switch {
				case !ok:
					closed = true
					break drain
				case p.due.After(time.Now()):
					held = &p
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		bufs = bufs[:0]
		for _, p := range batch {
			bufs = append(bufs, p.data)
		}
		if _, err := bufs.WriteTo(dst); err != nil {
			_ = src.Close()
			for range q { // let the reader finish
			}
			return
		}
		for _, p := range batch {
			select {
			case free <- p.data[:cap(p.data)]:
			default:
			}
		}
	}
	_ = dst.CloseWrite()
}
