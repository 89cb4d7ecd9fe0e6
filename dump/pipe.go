package dump

import (
	"io"
	"sync"
)

// streamPipe is io.Pipe with a bounded buffer. io.Pipe hands each write
// over synchronously, so a table's statement producer waited while the sink
// chunked, compressed and encrypted, and the two never ran at the same
// time; through streamPipe the producer runs up to pipeBuffers buffers of
// pipeBufSize ahead of the sink. Close semantics are io.Pipe's: the
// reader's CloseWithError fails later writes with that error, the writer's
// ends the reader's data with it (io.EOF for nil).
type streamPipe struct {
	full chan []byte   // filled buffers, in order
	free chan []byte   // emptied buffers for reuse
	done chan struct{} // closed when the reader stops
	once sync.Once
	rerr error // the reader's close error; set before done is closed
	werr error // the writer's close error; set before full is closed

	// writer side
	wbuf  []byte
	alloc int

	// reader side
	rbuf []byte
	rpos int
}

const (
	pipeBufSize = 256 << 10
	pipeBuffers = 4
)

func newStreamPipe() *streamPipe {
	return &streamPipe{full: make(chan []byte, pipeBuffers), free: make(chan []byte, pipeBuffers), done: make(chan struct{})}
}

// pipeReader and pipeWriter are the two ends.
type pipeReader struct{ p *streamPipe }
type pipeWriter struct{ p *streamPipe }

func (p *streamPipe) ends() (*pipeReader, *pipeWriter) { return &pipeReader{p}, &pipeWriter{p} }

func (w *pipeWriter) Write(b []byte) (int, error) {
	p := w.p
	n := 0
	for len(b) > 0 {
		if p.wbuf == nil {
			select {
			case buf := <-p.free:
				p.wbuf = buf[:0]
			default:
				if p.alloc < pipeBuffers {
					p.alloc++
					p.wbuf = make([]byte, 0, pipeBufSize)
				} else {
					select {
					case buf := <-p.free:
						p.wbuf = buf[:0]
					case <-p.done:
						return n, p.rerr
					}
				}
			}
		}
		k := copy(p.wbuf[len(p.wbuf):cap(p.wbuf)], b)
		p.wbuf = p.wbuf[:len(p.wbuf)+k]
		b = b[k:]
		n += k
		if len(p.wbuf) == cap(p.wbuf) {
			if err := w.send(); err != nil {
				return n, err
			}
		}
	}
	select {
	case <-p.done:
		return n, p.rerr
	default:
	}
	return n, nil
}

func (w *pipeWriter) send() error {
	p := w.p
	select {
	case p.full <- p.wbuf:
		p.wbuf = nil
		return nil
	case <-p.done:
		return p.rerr
	}
}

// CloseWithError ends the stream after what was written; the reader sees
// err after the data (io.EOF when nil). It must be called once.
func (w *pipeWriter) CloseWithError(err error) error {
	p := w.p
	if err == nil {
		err = io.EOF
	}
	if len(p.wbuf) > 0 {
		_ = w.send() // fails only when the reader stopped: it has its own error
	}
	p.werr = err
	close(p.full)
	return nil
}

func (r *pipeReader) Read(b []byte) (int, error) {
	p := r.p
	for r.p.rpos == len(p.rbuf) {
		if p.rbuf != nil {
			select {
			case p.free <- p.rbuf:
			default:
			}
			p.rbuf, p.rpos = nil, 0
		}
		buf, ok := <-p.full
		if !ok {
			return 0, p.werr
		}
		p.rbuf, p.rpos = buf, 0
	}
	n := copy(b, p.rbuf[p.rpos:])
	p.rpos += n
	return n, nil
}

// CloseWithError stops the reader: the writer's next Write fails with err
// (io.ErrClosedPipe when nil).
func (r *pipeReader) CloseWithError(err error) error {
	if err == nil {
		err = io.ErrClosedPipe
	}
	r.p.once.Do(func() {
		r.p.rerr = err
		close(r.p.done)
	})
	return nil
}
