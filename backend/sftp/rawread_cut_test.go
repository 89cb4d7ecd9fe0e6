package sftp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// closingWriter is the request side of a channel: once closed, writes fail
// with io.EOF (as x/crypto/ssh's do after the server closed the channel) and
// the first such write ends the response stream.
type closingWriter struct {
	w      io.WriteCloser
	closed atomic.Bool
	once   sync.Once
	onEOF  func()
}

func (c *closingWriter) Write(p []byte) (int, error) {
	if c.closed.Load() {
		c.once.Do(c.onEOF)
		return 0, io.EOF
	}
	return c.w.Write(p)
}

func (c *closingWriter) Close() error { return c.w.Close() }

// cutServer answers a read session's requests from data and, at the read
// numbered cutAt, writes only the first part of a response (cut) and ends
// the stream: the server died in the middle of a packet. A nil cut closes
// the channel instead (see closingWriter). window is how many
// reads the client sends from the cut one on before it waits for it.
func cutServer(t *testing.T, data []byte, cutAt, window int, cut func(id uint32) []byte) *rawSession {
	t.Helper()
	respR, respW := io.Pipe()
	reqR, reqW := io.Pipe()
	w := &closingWriter{w: reqW, onEOF: func() { _ = respW.Close() }}
	s := &rawSession{w: w, pend: map[uint32]*rawReq{}, readSize: 1024}
	s.bufs.New = func() any { b := make([]byte, 1024); return &b }
	go s.receive(bufio.NewReader(respR))
	t.Cleanup(func() { s.close(); _ = reqR.Close(); _ = respW.Close() })
	go func() {
		defer respW.Close()
		br := bufio.NewReader(reqR)
		reads := 0
		var cutID uint32
		for {
			var hdr [9]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-5)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			typ, id := hdr[4], binary.BigEndian.Uint32(hdr[5:9])
			var resp []byte
			switch typ {
			case fxpOpen:
				resp = appendString([]byte{fxpHandle, 0, 0, 0, 0}, "h")
			case fxpRead:
				if reads++; reads == cutAt {
					if cut == nil {
						// The channel closes: the client's next write
						// gets io.EOF, then its responses end.
						w.closed.Store(true)
						_, _ = io.Copy(io.Discard, br)
						return
					}
					cutID = id
				}
				if cutID != 0 {
					// Hold the cut until the reader has sent every read
					// it can before it waits for the cut one, so that it
					// meets the cut as the head of its window.
					if reads < cutAt+window-1 {
						continue
					}
					_, _ = respW.Write(cut(cutID))
					_ = respW.Close()
					// Later requests still go out (as over SSH until
					// the channel's close arrives); nothing answers.
					_, _ = io.Copy(io.Discard, br)
					return
				}
				_, rest, _ := takeString(body)
				off := binary.BigEndian.Uint64(rest)
				n := uint64(binary.BigEndian.Uint32(rest[8:]))
				if off >= uint64(len(data)) {
					resp = binary.BigEndian.AppendUint32([]byte{fxpStatus, 0, 0, 0, 0}, fxEOF)
					resp = appendString(appendString(resp, "EOF"), "")
				} else {
					resp = appendString([]byte{fxpData, 0, 0, 0, 0}, string(data[off:min(off+n, uint64(len(data)))]))
				}
			default:
				continue // CLOSE: no answer needed
			}
			binary.BigEndian.PutUint32(resp[1:5], id)
			pkt := binary.BigEndian.AppendUint32(nil, uint32(len(resp)))
			if _, err := respW.Write(append(pkt, resp...)); err != nil {
				return
			}
		}
	}()
	return s
}

// A server that dies in the middle of a response, wherever the cut falls,
// ends a range read with an error, never with a clean (short) end of file:
// an io.EOF from the middle of a packet once reached the reader as the end
// of the file, and a whole-file load returned a truncated pack as complete.
func TestRawResponseCutOff(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB: 16 reads
	header := func(typ byte, id uint32, length uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		return binary.BigEndian.AppendUint32(append(b, typ), id)
	}
	cuts := map[string]func(id uint32) []byte{
		"between packets":     func(uint32) []byte { return nil },
		"after a DATA header": func(id uint32) []byte { return header(fxpData, id, 5+4+1024) },
		"after a DATA length": func(id uint32) []byte { return binary.BigEndian.AppendUint32(header(fxpData, id, 5+4+1024), 1024) },
		"inside DATA bytes": func(id uint32) []byte {
			return append(binary.BigEndian.AppendUint32(header(fxpData, id, 5+4+1024), 1024), data[:100]...)
		},
		"after a STATUS header":    func(id uint32) []byte { return header(fxpStatus, id, 5+4+4+4) },
		"channel closed to writes": nil,
		"after half a STATUS body": func(id uint32) []byte { return append(header(fxpStatus, id, 5+4+4+4), 0, 0) },
	}
	for name, cut := range cuts {
		for _, n := range []int64{-1, int64(len(data))} {
			for _, cutAt := range []int{1, 5} {
				// Reads the client sends before it must wait for the
				// cut one: a full window past it, or the range's last.
				window := rawWindow / 1024
				if n > 0 {
					window = int(n)/1024 - cutAt + 1
				}
				s := cutServer(t, data, cutAt, window, cut)
				got, err := readRange(s, "/pack", 0, n)
				var short *shortFileError
				if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &short) {
					t.Errorf("cut %s at read %d, range %d: %d bytes, error %v; want a lost-session error", name, cutAt, n, len(got), err)
				}
				if !bytes.HasPrefix(data, got) {
					t.Errorf("cut %s at read %d: delivered bytes differ from the file", name, cutAt)
				}
			}
		}
	}
}
