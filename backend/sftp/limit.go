package sftp

import (
	"context"
	"io"
	"sync"
	"time"
)

// tokenBucket limits a rate in bytes per second, shared by all transfers in
// one direction. A caller may take more than the burst at once: the bucket
// goes into debt and the caller sleeps until it is repaid, so large reads
// keep the long-term rate exact.
type tokenBucket struct {
	rate  float64 // bytes per second
	burst float64

	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newTokenBucket returns nil (no limit) when kib is 0.
func newTokenBucket(kib int, now func() time.Time, sleep func(context.Context, time.Duration) error) *tokenBucket {
	if kib <= 0 {
		return nil
	}
	rate := float64(kib) * 1024
	burst := rate / 4 // a quarter second of traffic
	if burst < 32*1024 {
		burst = 32 * 1024
	}
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, now: now, sleep: sleep, last: now()}
}

// wait takes n tokens, sleeping as long as the bucket is in debt.
func (b *tokenBucket) wait(ctx context.Context, n int) error {
	if b == nil || n <= 0 {
		return nil
	}
	b.mu.Lock()
	now := b.now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	b.tokens -= float64(n)
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if d > 0 {
		return b.sleep(ctx, d)
	}
	return nil
}

// sourceReader reads the data of a Save: it stops on ctx, applies the upload
// limit and remembers its own error, so a failure of the source is never
// mistaken for a failure of the connection.
type sourceReader struct {
	ctx   context.Context
	r     io.Reader
	limit *tokenBucket
	err   error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	if s.limit != nil && len(p) > 64*1024 {
		p = p[:64*1024]
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	if werr := s.limit.wait(s.ctx, n); werr != nil {
		s.err = werr
		return n, werr
	}
	return n, err
}
