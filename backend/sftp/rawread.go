package sftp

// Reading ranges of files over a second, read-only SFTP session.
//
// pkg/sftp allocates a fresh buffer for every response it receives and copies
// it again into the caller's buffer, and every ReadAt starts a goroutine per
// request in flight: restoring 1 GB made 1 GB of garbage there alone (the
// SSH layer below makes another). Restores read whole packs or long ranges,
// so Load speaks SFTP version 3's OPEN/FSTAT/READ/CLOSE itself on its own
// "sftp" subsystem channel of the same SSH connection: responses are
// demultiplexed by one receiver that reads each DATA payload straight into
// the buffer the request was made for, and a range keeps a fixed ring of
// such buffers in flight. Everything else (writes, renames, listings, stat,
// statvfs) stays on pkg/sftp. A server that refuses the second channel (for
// example sshd's MaxSessions 1) gets the pkg/sftp path instead.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// SFTP v3 packet types and status codes used here.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpFstat         = 8
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201

	fxOK               = 0
	fxEOF              = 1
	fxNoSuchFile       = 2
	fxPermissionDenied = 3

	fxfRead       = 0x1
	fxAttrSize    = 0x1
	rawMinRead    = 32 << 10  // every SFTP server must serve reads of this size
	rawMaxRead    = 256 << 10 // what we ask for at most per request
	rawWindow     = 3 << 20   // bytes in flight per range (~150 MB/s at 20 ms)
	rawMaxControl = 64 << 10  // largest non-DATA response we accept
)

// rawSession is the read-only SFTP session of one connection.
type rawSession struct {
	sess     *ssh.Session
	readSize int // bytes per READ request

	wmu  sync.Mutex // serialises request writes
	w    io.WriteCloser
	wbuf []byte

	mu   sync.Mutex
	next uint32
	pend map[uint32]*rawReq
	err  error // why the session ended; nil while it runs

	bufs sync.Pool // *[]byte of readSize
}

// rawReq is one request in flight. DATA lands in buf; any other response's
// body (after the id) in body.
type rawReq struct {
	buf  []byte
	n    int
	typ  byte
	body []byte
	err  error
	done chan struct{} // receives once per completed request
}

func newRawReq(buf []byte) *rawReq { return &rawReq{buf: buf, done: make(chan struct{}, 1)} }

// rawStatusError is an SFTP status other than OK, with the server's message.
type rawStatusError struct {
	code uint32
	msg  string
}

func (e *rawStatusError) Error() string {
	if e.msg != "" {
		return fmt.Sprintf("sftp status %d: %s", e.code, e.msg)
	}
	return fmt.Sprintf("sftp status %d", e.code)
}

// Is maps the codes callers test for onto the os errors.
func (e *rawStatusError) Is(target error) bool {
	switch e.code {
	case fxNoSuchFile:
		return target == os.ErrNotExist
	case fxPermissionDenied:
		return target == os.ErrPermission
	}
	return false
}

// errRawProtocol marks a response the client cannot make sense of.
var errRawProtocol = errors.New("sftp: malformed response")

// rawOpenTimeout bounds the set-up of a read session: a server that takes
// the channel but never answers on it must not hold the connection's loads
// (they fall back to pkg/sftp).
const rawOpenTimeout = 30 * time.Second

// openRawSession starts the sftp subsystem on a new channel of client and
// negotiates version 3 (and the server's read limit where it says it).
func openRawSession(client *ssh.Client, timeout time.Duration) (*rawSession, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	// Closing the session ends a subsystem request or a read that waits.
	timer := time.AfterFunc(timeout, func() { _ = sess.Close() })
	defer timer.Stop()
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		sess.Close()
		return nil, err
	}
	s := &rawSession{sess: sess, w: w, pend: map[uint32]*rawReq{}, readSize: rawMinRead}
	br := bufio.NewReaderSize(r, 64<<10)
	exts, err := s.handshake(br)
	if err != nil {
		sess.Close()
		return nil, err
	}
	go s.receive(br)
	if _, ok := exts["limits@openssh.com"]; ok {
		if n, err := s.maxRead(); err == nil && n > rawMinRead {
			s.readSize = int(min(n, rawMaxRead))
		}
	}
	if !timer.Stop() {
		// The timer fired while the session was set up: it is closed.
		return nil, errors.New("sftp read session: no answer in time")
	}
	size := s.readSize
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	return s, nil
}

// handshake sends INIT and reads VERSION with its extensions.
func (s *rawSession) handshake(br *bufio.Reader) (map[string]string, error) {
	if _, err := s.w.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3}); err != nil {
		return nil, err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if hdr[4] != fxpVersion || n < 5 || n > rawMaxControl {
		return nil, fmt.Errorf("%w: no VERSION (type %d, length %d)", errRawProtocol, hdr[4], n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	if v := binary.BigEndian.Uint32(body); v != 3 {
		return nil, fmt.Errorf("sftp: server speaks version %d, not 3", v)
	}
	exts := map[string]string{}
	rest := body[4:]
	for len(rest) > 0 {
		name, r1, ok := takeString(rest)
		if !ok {
			break
		}
		data, r2, ok := takeString(r1)
		if !ok {
			break
		}
		exts[string(name)] = string(data)
		rest = r2
	}
	return exts, nil
}

// maxRead asks limits@openssh.com for the server's largest read.
func (s *rawSession) maxRead() (uint64, error) {
	name := "limits@openssh.com"
	req := newRawReq(nil)
	if err := s.send(req, fxpExtended, func(b []byte) []byte { return appendString(b, name) }); err != nil {
		return 0, err
	}
	<-req.done
	if req.err != nil {
		return 0, req.err
	}
	if req.typ != fxpExtendedReply || len(req.body) < 32 {
		return 0, statusOr(req, "limits")
	}
	return binary.BigEndian.Uint64(req.body[8:16]), nil
}

// send registers req under a new id and writes the request of type typ whose
// payload (after the id) body appends.
func (s *rawSession) send(req *rawReq, typ byte, body func([]byte) []byte) error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.next++
	id := s.next
	if req != nil {
		s.pend[id] = req
	}
	s.mu.Unlock()

	s.wmu.Lock()
	b := append(s.wbuf[:0], 0, 0, 0, 0, typ)
	b = binary.BigEndian.AppendUint32(b, id)
	b = body(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := s.w.Write(b)
	s.wbuf = b
	s.wmu.Unlock()
	if err != nil {
		// A channel the server closed answers writes with io.EOF.
		err = sessionEnded(err)
		s.fail(err)
		return err
	}
	return nil
}

// receive dispatches responses until the channel ends, then fails every
// request still waiting.
func (s *rawSession) receive(br *bufio.Reader) {
	// abort completes req with err and ends the session. The stream can
	// only end between packets: an io.EOF from a read inside one (the
	// server died right after a header) is a cut-off response, and must
	// never reach a range reader as the end of its file.
	abort := func(req *rawReq, err error) {
		err = sessionEnded(err)
		req.err = err
		req.done <- struct{}{}
		s.fail(err)
	}
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			s.fail(err)
			return
		}
		n := int64(binary.BigEndian.Uint32(hdr[:4]))
		typ, id := hdr[4], binary.BigEndian.Uint32(hdr[5:9])
		if n < 5 || n > rawMaxRead+rawMaxControl {
			s.fail(fmt.Errorf("%w: packet length %d", errRawProtocol, n))
			return
		}
		s.mu.Lock()
		req := s.pend[id]
		delete(s.pend, id)
		s.mu.Unlock()
		rest := n - 5
		if req == nil {
			// A response nobody waits for (CLOSE).
			if _, err := br.Discard(int(rest)); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		req.typ, req.n, req.body = typ, 0, nil
		if typ == fxpData && req.buf != nil {
			var l [4]byte
			if rest < 4 {
				abort(req, fmt.Errorf("%w: DATA of %d bytes", errRawProtocol, rest))
				return
			}
			if _, err := io.ReadFull(br, l[:]); err != nil {
				abort(req, err)
				return
			}
			dl := int64(binary.BigEndian.Uint32(l[:]))
			if dl > rest-4 || dl > int64(len(req.buf)) {
				abort(req, fmt.Errorf("%w: DATA of %d bytes for a read of %d", errRawProtocol, dl, len(req.buf)))
				return
			}
			if _, err := io.ReadFull(br, req.buf[:dl]); err != nil {
				abort(req, err)
				return
			}
			req.n = int(dl)
			if extra := rest - 4 - dl; extra > 0 {
				if _, err := br.Discard(int(extra)); err != nil {
					abort(req, err)
					return
				}
			}
		} else {
			if rest > rawMaxControl {
				abort(req, fmt.Errorf("%w: response type %d of %d bytes", errRawProtocol, typ, rest))
				return
			}
			req.body = make([]byte, rest)
			if _, err := io.ReadFull(br, req.body); err != nil {
				abort(req, err)
				return
			}
		}
		req.done <- struct{}{}
	}
}

// fail ends the session with err (the first one sticks) and completes every
// waiting request with it.
func (s *rawSession) fail(err error) {
	err = sessionEnded(err)
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	pend := s.pend
	s.pend = map[uint32]*rawReq{}
	err = s.err
	s.mu.Unlock()
	for _, r := range pend {
		r.err = err
		r.done <- struct{}{}
	}
	if s.sess != nil {
		_ = s.sess.Close()
	}
}

// sessionEnded turns the end of the response stream into an error that no
// reader takes for the end of a file.
func sessionEnded(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("sftp read session closed: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// alive reports whether the session still runs.
func (s *rawSession) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil
}

func (s *rawSession) close() { s.fail(errors.New("sftp read session closed")) }

// call sends a request and waits for its response.
func (s *rawSession) call(typ byte, body func([]byte) []byte) (*rawReq, error) {
	req := newRawReq(nil)
	if err := s.send(req, typ, body); err != nil {
		return nil, err
	}
	<-req.done
	if req.err != nil {
		return nil, req.err
	}
	return req, nil
}

// open opens name for reading and returns its handle and, if withSize, its
// size (-1 otherwise: a range read finds a short file by itself).
func (s *rawSession) open(name string, withSize bool) (string, int64, error) {
	req, err := s.call(fxpOpen, func(b []byte) []byte {
		b = appendString(b, name)
		b = binary.BigEndian.AppendUint32(b, fxfRead)
		return binary.BigEndian.AppendUint32(b, 0) // no attributes
	})
	if err != nil {
		return "", 0, err
	}
	if req.typ != fxpHandle {
		return "", 0, statusOr(req, "open")
	}
	h, _, ok := takeString(req.body)
	if !ok {
		return "", 0, fmt.Errorf("%w: HANDLE", errRawProtocol)
	}
	handle := string(h)
	if !withSize {
		return handle, -1, nil
	}
	req, err = s.call(fxpFstat, func(b []byte) []byte { return appendString(b, handle) })
	if err != nil {
		return "", 0, err
	}
	if req.typ != fxpAttrs {
		s.closeHandle(handle)
		return "", 0, statusOr(req, "fstat")
	}
	if len(req.body) < 12 || binary.BigEndian.Uint32(req.body)&fxAttrSize == 0 {
		s.closeHandle(handle)
		return "", 0, fmt.Errorf("%w: fstat without a size", errRawProtocol)
	}
	return handle, int64(binary.BigEndian.Uint64(req.body[4:12])), nil
}

// closeHandle closes a handle without waiting for the answer.
func (s *rawSession) closeHandle(handle string) {
	_ = s.send(nil, fxpClose, func(b []byte) []byte { return appendString(b, handle) })
}

// read sends a READ of len(req.buf) bytes at off into req.buf.
func (s *rawSession) read(req *rawReq, handle string, off int64) error {
	return s.send(req, fxpRead, func(b []byte) []byte {
		b = appendString(b, handle)
		b = binary.BigEndian.AppendUint64(b, uint64(off))
		return binary.BigEndian.AppendUint32(b, uint32(len(req.buf)))
	})
}

// statusOr turns a STATUS response into its error, anything else into a
// protocol error naming the operation.
func statusOr(req *rawReq, op string) error {
	if req.typ == fxpStatus && len(req.body) >= 4 {
		code := binary.BigEndian.Uint32(req.body)
		msg, _, _ := takeString(req.body[4:])
		if code == fxOK {
			return fmt.Errorf("%w: %s answered OK without a result", errRawProtocol, op)
		}
		return &rawStatusError{code: code, msg: string(msg)}
	}
	return fmt.Errorf("%w: %s answered with type %d", errRawProtocol, op, req.typ)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func takeString(b []byte) ([]byte, []byte, bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// shortFileError is a file that ended before the range asked for: the
// object on the server is damaged, not the connection.
type shortFileError struct {
	name     string
	at, want int64
}

func (e *shortFileError) Error() string {
	return fmt.Sprintf("%s ended at byte %d, expected %d", e.name, e.at, e.want)
}

func (e *shortFileError) Unwrap() error { return io.ErrUnexpectedEOF }

// rawSlot is one buffer of a range with its request.
type rawSlot struct {
	req     *rawReq
	bufp    *[]byte
	off     int64 // file offset of buf[0]
	want    int   // bytes of buf the range needs
	got     int   // bytes received so far
	pending bool  // a request is in flight
}

// rawRange reads [off, end) of an open file in order, keeping a ring of
// reads in flight.
type rawRange struct {
	ctx    context.Context
	s      *rawSession
	name   string
	handle string
	limit  *tokenBucket
	pos    int64 // next offset to request
	end    int64
	slots  []*rawSlot
	head   int
	cur    []byte
	done   bool // the head slot is complete and its data delivered
	toEOF  bool // read to the file's end (end is MaxInt64)
	err    error
}

// newRange starts reading n bytes at off; n < 0 reads to the end of the file.
func (s *rawSession) newRange(ctx context.Context, name, handle string, off, n int64, limit *tokenBucket) *rawRange {
	r := &rawRange{ctx: ctx, s: s, name: name, handle: handle, limit: limit, pos: off, end: off + n}
	k := rawWindow / s.readSize
	if n < 0 {
		// To the end, size unknown: the whole window at once (the reads
		// past the end cost the server an EOF status each).
		r.end, r.toEOF = math.MaxInt64, true
	} else {
		k = max(2, min(k, int((n+int64(s.readSize)-1)/int64(s.readSize))))
	}
	r.slots = make([]*rawSlot, k)
	for i := range r.slots {
		bp := s.bufs.Get().(*[]byte)
		r.slots[i] = &rawSlot{req: newRawReq(nil), bufp: bp}
	}
	for _, sl := range r.slots {
		if err := r.issue(sl); err != nil {
			r.err = err
			break
		}
	}
	return r
}

// issue makes sl read the next part of the range, if any is left.
func (r *rawRange) issue(sl *rawSlot) error {
	if r.pos >= r.end {
		sl.want, sl.got = 0, 0
		return nil
	}
	sz := min(int64(r.s.readSize), r.end-r.pos)
	sl.off, sl.want, sl.got = r.pos, int(sz), 0
	r.pos += sz
	return r.reread(sl)
}

// reread requests what sl still misses.
func (r *rawRange) reread(sl *rawSlot) error {
	sl.req.buf = (*sl.bufp)[sl.got:sl.want]
	sl.req.err = nil
	if err := r.s.read(sl.req, r.handle, sl.off+int64(sl.got)); err != nil {
		return err
	}
	sl.pending = true
	return nil
}

func (r *rawRange) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		sl := r.slots[r.head]
		if r.done {
			// The head slot's data has been read: refill it and move on.
			r.done = false
			if err := r.issue(sl); err != nil {
				r.err = err
				return 0, err
			}
			r.head = (r.head + 1) % len(r.slots)
			continue
		}
		if sl.want == 0 {
			r.err = io.EOF
			return 0, io.EOF
		}
		select {
		case <-sl.req.done:
			sl.pending = false
		case <-r.ctx.Done():
			r.err = r.ctx.Err()
			return 0, r.err
		}
		req := sl.req
		switch {
		case req.err != nil:
			r.err = req.err
		case req.typ == fxpData && req.n > 0:
			// The bandwidth limit is charged for what arrived (a read
			// past the end of a file costs nothing); the window of reads
			// in flight refills no faster than the limit lets data out.
			if err := r.limit.wait(r.ctx, req.n); err != nil {
				r.err = err
				return 0, err
			}
			r.cur = (*sl.bufp)[sl.got : sl.got+req.n]
			sl.got += req.n
			if sl.got < sl.want {
				// A short read: ask for the rest (into the part of the
				// buffer after the bytes about to be delivered).
				if err := r.reread(sl); err != nil {
					r.err = err
				}
			} else {
				r.done = true
			}
		case r.toEOF && (req.typ == fxpData || req.typ == fxpStatus && len(req.body) >= 4 && binary.BigEndian.Uint32(req.body) == fxEOF):
			// The end of the file: the reads after this one are past it.
			r.err = io.EOF
		case req.typ == fxpStatus && len(req.body) >= 4 && binary.BigEndian.Uint32(req.body) == fxEOF,
			req.typ == fxpData:
			r.err = &shortFileError{name: r.name, at: sl.off + int64(sl.got), want: r.end}
		default:
			r.err = statusOr(req, "read")
		}
		if r.err != nil && len(r.cur) == 0 {
			return 0, r.err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// stop waits for the reads still in flight (their buffers must not be reused
// before the receiver is done with them), closes the handle and returns the
// buffers. It returns the first error the reader saw, if any.
func (r *rawRange) stop() error {
	for _, sl := range r.slots {
		if sl.pending {
			done := false
			select {
			case <-sl.req.done:
				done = true
			case <-r.ctx.Done():
				// Cancelled (Ctrl-C): a server that stopped answering
				// must not hold us until the keepalive gives up. The
				// reads still out keep their buffers (never reused: the
				// receiver fills them if the answers come) and the
				// session goes on serving the connection's other loads.
			}
			if !done {
				continue
			}
			sl.pending = false
		}
		r.s.bufs.Put(sl.bufp)
	}
	r.slots = nil
	r.s.closeHandle(r.handle)
	if r.err == io.EOF {
		return nil
	}
	return r.err
}
