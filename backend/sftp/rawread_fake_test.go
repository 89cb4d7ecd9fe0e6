package sftp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// shortReader serves data at most max bytes per ReadAt (as some SFTP
// servers answer a READ), and fails reads at or past failAt.
type shortReader struct {
	data   []byte
	max    int
	failAt int64
}

func (s *shortReader) ReadAt(p []byte, off int64) (int, error) {
	if s.failAt > 0 && off >= s.failAt {
		return 0, errors.New("disk error")
	}
	if off >= int64(len(s.data)) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.max)], s.data[off:])
	return n, nil
}

type fakeFiles struct{ files map[string]*shortReader }

func (f fakeFiles) Fileread(r *pkgsftp.Request) (io.ReaderAt, error) {
	if rd, ok := f.files[r.Filepath]; ok {
		return rd, nil
	}
	return nil, os.ErrNotExist
}

// fakeSFTPServer runs an in-process SSH server whose sftp subsystem is
// pkg/sftp's request server over files, and returns a client of it.
func fakeSFTPServer(t *testing.T, files map[string]*shortReader) *ssh.Client {
	return fakeServer(t, files, false)
}

// fakeServer is fakeSFTPServer; with mute, the sftp subsystem is granted
// but never answers.
func fakeServer(t *testing.T, files map[string]*shortReader, mute bool) *ssh.Client {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, scfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					go func() {
						for req := range creqs {
							ok := req.Type == "subsystem" && len(req.Payload) > 4 && string(req.Payload[4:]) == "sftp"
							_ = req.Reply(ok, nil)
							if ok && !mute {
								srv := pkgsftp.NewRequestServer(ch, pkgsftp.Handlers{FileGet: fakeFiles{files}})
								go func() { _ = srv.Serve(); _ = ch.Close() }()
							}
						}
					}()
				}
			}()
		}
	}()
	client, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{User: "t", HostKeyCallback: ssh.FixedHostKey(signer.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// readRange reads n bytes at off of name through a read session.
func readRange(rs *rawSession, name string, off, n int64) ([]byte, error) {
	handle, _, err := rs.open(name, false)
	if err != nil {
		return nil, err
	}
	rr := rs.newRange(context.Background(), name, handle, off, n, nil)
	got, err := io.ReadAll(rr)
	if serr := rr.stop(); err == nil {
		err = serr
	}
	return got, err
}

// A server that answers READs with fewer bytes than asked (pkg/sftp's own
// server over a short-reading file) is read exactly, by asking again for the
// rest; a server error mid-range and a missing file end in errors, and the
// session keeps working after them.
func TestRawShortReadsAndServerErrors(t *testing.T) {
	data := make([]byte, 1<<20+77)
	_, _ = rand.Read(data)
	files := map[string]*shortReader{
		"/short":  {data: data, max: 1000},
		"/broken": {data: data, max: 1 << 20, failAt: 300000},
	}
	client := fakeSFTPServer(t, files)
	rs, err := openRawSession(client, rawOpenTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.close()
	got, err := readRange(rs, "/short", 5, int64(len(data))-5)
	if err != nil || !bytes.Equal(got, data[5:]) {
		t.Fatalf("short reads: %d bytes, %v; want the file's %d", len(got), err, len(data)-5)
	}
	got, err = readRange(rs, "/short", 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("short reads to EOF: %d bytes, %v", len(got), err)
	}
	if _, err := readRange(rs, "/short", 0, int64(len(data))+1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("range past the end: %v, want ErrUnexpectedEOF", err)
	}
	if _, err := readRange(rs, "/broken", 0, int64(len(data))); err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a server error mid-range: %v, want the server's failure", err)
	}
	if _, err := readRange(rs, "/missing", 0, 10); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	got, err = readRange(rs, "/short", 1<<20, 77)
	if err != nil || !bytes.Equal(got, data[1<<20:]) {
		t.Fatalf("after the errors: %d bytes, %v", len(got), err)
	}
}

// A server that grants the sftp subsystem and then never answers makes the
// read session give up after its timeout (loads then use pkg/sftp) instead
// of holding the connection.
func TestRawSessionOpenTimesOut(t *testing.T) {
	client := fakeServer(t, nil, true)
	start := time.Now()
	rs, err := openRawSession(client, 300*time.Millisecond)
	if err == nil {
		rs.close()
		t.Fatal("a silent server gave a read session")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %s, want about 300ms", d)
	}
}
