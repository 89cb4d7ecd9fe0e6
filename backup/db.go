package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/chunk"
	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
)

// DBSource says which databases to dump into the snapshot. The dump lands
// in the snapshot as /db/<database>/<stream> files (plain SQL the stock
// client loads) plus /db/manifest.json (row counts and digests per table).
type DBSource struct {
	Config  *mysql.Config
	Options dump.Options
}

// ManifestName is the file name of the dump manifest under /db.
const ManifestName = "manifest.json"

type dumpSink struct {
	a     *archiver
	start time.Time
	mu    sync.Mutex
	files map[string]map[string]repo.Node // database -> stream name -> node
	read  int64
}

func (s *dumpSink) WriteStream(ctx context.Context, database, name string, r io.Reader) error {
	if err := repo.ValidName(database); err != nil {
		return fmt.Errorf("database name: %w", err)
	}
	for _, part := range strings.Split(name, "/") {
		if err := repo.ValidName(part); err != nil {
			return fmt.Errorf("stream name %q: %w", name, err)
		}
	}
	content, size, err := s.chunkAndSave(ctx, r)
	if err != nil {
		return fmt.Errorf("dump stream %s/%s: %w", database, name, err)
	}
	node := repo.Node{Name: path.Base(name), Type: repo.NodeFile, Mode: 0o600, ModTime: s.start.UTC(), Size: uint64(size), Content: content}
	s.mu.Lock()
	if s.files[database] == nil {
		s.files[database] = map[string]repo.Node{}
	}
	s.files[database][name] = node
	s.read += size
	s.mu.Unlock()
	if s.a.o.Progress != nil {
		s.a.o.Progress.FileDone("/db/"+database+"/"+name, size, size)
	}
	return nil
}

// chunkAndSave cuts r into SQL chunks and saves them, in order. Chunking
// and saving (hash, compression, encryption) run on two goroutines, so the
// dump's producer, the chunker and the saver overlap on a multi-core box.
func (s *dumpSink) chunkAndSave(ctx context.Context, r io.Reader) ([]repo.ID, int64, error) {
	params := s.a.r.Config().SQLChunks
	const inFlight = 4
	free := make(chan []byte, inFlight)
	for range inFlight {
		free <- make([]byte, params.MaxSize)
	}
	cut := make(chan []byte, inFlight)
	chunkErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(cut)
		ch := chunk.New(r, s.a.r.Polynomial(), params)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				chunkErr <- nil
				return
			}
			data, err := ch.Next(buf[:cap(buf)])
			if err == io.EOF {
				chunkErr <- nil
				return
			}
			if err != nil {
				chunkErr <- err
				return
			}
			select {
			case cut <- data:
			case <-stop:
				chunkErr <- nil
				return
			}
		}
	}()
	var content []repo.ID
	var size int64
	var serr error
	for data := range cut {
		if serr == nil {
			var id repo.ID
			if id, _, serr = s.a.saver.Save(ctx, repo.DataBlob, data); serr == nil {
				s.a.addRef(repo.BlobHandle{Type: repo.DataBlob, ID: id})
				content = append(content, id)
				size += int64(len(data))
			} else {
				close(stop) // the chunker stops; the stream's producer sees the sink return
			}
		}
		free <- data[:cap(data)]
	}
	if err := <-chunkErr; err != nil && serr == nil {
		return nil, 0, err
	}
	return content, size, serr
}

// dumpDatabases dumps into the snapshot and returns the /db directory node.
func (a *archiver) dumpDatabases(ctx context.Context, db *DBSource) (*repo.Node, *repo.DBInfo, error) {
	sink := &dumpSink{a: a, start: a.o.Now(), files: map[string]map[string]repo.Node{}}
	m, err := dump.Dump(ctx, db.Config, db.Options, sink)
	if err != nil {
		return nil, nil, fmt.Errorf("database dump failed, no snapshot written: %w", err)
	}
	mj, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, nil, err
	}
	manifestID, _, err := a.saver.Save(ctx, repo.DataBlob, mj)
	if err != nil {
		return nil, nil, err
	}
	a.addRef(repo.BlobHandle{Type: repo.DataBlob, ID: manifestID})

	dirNode := func(name string, nodes []repo.Node) (repo.Node, error) {
		slices.SortFunc(nodes, func(x, y repo.Node) int { return strings.Compare(x.Name, y.Name) })
		id, err := a.saveTree(ctx, &repo.Tree{Nodes: nodes})
		if err != nil {
			return repo.Node{}, err
		}
		return repo.Node{Name: name, Type: repo.NodeDir, Mode: fs.ModeDir | 0o700, ModTime: sink.start.UTC(), Subtree: &id}, nil
	}
	var dbNodes []repo.Node
	info := &repo.DBInfo{Method: string(m.Method), ConsistentAt: m.Started, Manifest: manifestID}
	if m.FallbackReason != "" {
		info.Method += " (fallback: " + m.FallbackReason + ")"
	}
	if m.Binlog != nil {
		info.BinlogFile, info.BinlogPos, info.GTID = m.Binlog.File, m.Binlog.Position, m.Binlog.GTID
	}
	for _, d := range m.Databases {
		info.Databases = append(info.Databases, d.Name)
		subdirs := map[string][]repo.Node{}
		var top []repo.Node
		for name, n := range sink.files[d.Name] {
			if dir := path.Dir(name); dir != "." {
				subdirs[dir] = append(subdirs[dir], n)
			} else {
				top = append(top, n)
			}
		}
		for dir, nodes := range subdirs {
			if strings.Contains(dir, "/") {
				return nil, nil, fmt.Errorf("stream directory %q nests too deep", dir)
			}
			n, err := dirNode(dir, nodes)
			if err != nil {
				return nil, nil, err
			}
			top = append(top, n)
		}
		n, err := dirNode(d.Name, top)
		if err != nil {
			return nil, nil, err
		}
		dbNodes = append(dbNodes, n)
	}
	dbNodes = append(dbNodes, repo.Node{Name: ManifestName, Type: repo.NodeFile, Mode: 0o600, ModTime: sink.start.UTC(), Size: uint64(len(mj)), Content: []repo.ID{manifestID}})
	n, err := dirNode("db", dbNodes)
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	a.stats.Bytes += sink.read
	a.stats.BytesRead += sink.read
	a.mu.Unlock()
	return &n, info, nil
}
