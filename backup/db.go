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
	params := s.a.r.Config().SQLChunks
	ch := chunk.New(r, s.a.r.Polynomial(), params)
	buf := make([]byte, params.MaxSize)
	var content []repo.ID
	var size int64
	for {
		data, err := ch.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("dump stream %s/%s: %w", database, name, err)
		}
		id, _, err := s.a.saver.Save(ctx, repo.DataBlob, data)
		if err != nil {
			return err
		}
		s.a.addRef(repo.BlobHandle{Type: repo.DataBlob, ID: id})
		content = append(content, id)
		size += int64(len(data))
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
