package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/shopvault/shopvault/schedule"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar prints one updating status line (files, bytes, rate, ETA)
// to a terminal. It is safe for concurrent use; a nil *progressBar is a
// no-op.
type progressBar struct {
	w      io.Writer
	label  string
	start  time.Time
	total  int64 // expected bytes; 0 = unknown
	files  atomic.Int64
	bytes  atomic.Int64
	errors atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
}

func newProgressBar(w io.Writer, label string, total int64) *progressBar {
	if !isTerminal(w) {
		return nil
	}
	p := &progressBar{w: w, label: label, start: time.Now(), total: total, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progressBar) add(files, bytes int64) {
	if p == nil {
		return
	}
	p.files.Add(files)
	p.bytes.Add(bytes)
}

func (p *progressBar) warn(msg string) {
	if p == nil {
		return
	}
	p.errors.Add(1)
	p.mu.Lock()
	fmt.Fprintf(p.w, "\r\033[K%s\n", msg)
	p.mu.Unlock()
}

func (p *progressBar) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			fmt.Fprint(p.w, "\r\033[K")
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K%s", p.line())
			p.mu.Unlock()
		}
	}
}

func (p *progressBar) line() string {
	el := time.Since(p.start)
	b := p.bytes.Load()
	rate := float64(b) / el.Seconds()
	s := fmt.Sprintf("%s %s  %d files  %s  %s/s", p.label, fmtDuration(el), p.files.Load(), fmtBytes(b), fmtBytes(int64(rate)))
	if p.total > 0 && rate > 0 {
		pct := float64(b) / float64(p.total) * 100
		if pct > 100 {
			pct = 100
		}
		left := time.Duration(float64(p.total-b)/rate) * time.Second
		if left < 0 {
			left = 0
		}
		s += fmt.Sprintf("  %3.0f%%  ETA %s", pct, fmtDuration(left))
	}
	if e := p.errors.Load(); e > 0 {
		s += fmt.Sprintf("  %d errors", e)
	}
	return s
}

func (p *progressBar) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}

func fmtBytes(n int64) string { return schedule.HumanBytes(n) }

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
