package restore_test

import (
	"bytes"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/repo"
)

// fixture is an in-memory repository plus a blob saver to build
// snapshots by hand.
type fixture struct {
	t     testing.TB
	be    *mem.Backend
	key   *repo.KeyFile
	r     *repo.Repository
	saver *repo.BlobSaver
	// want maps snapshot paths of regular files to their content.
	want map[string][]byte
}

var t0 = time.Date(2024, 3, 1, 12, 30, 45, 123456789, time.UTC)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	be := mem.New()
	_, restoreKey, err := repo.Init(ctx, be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, restoreKey)
	if err != nil {
		t.Fatal(err)
	}
	r.TempDir = t.TempDir()
	return &fixture{t: t, be: be, key: restoreKey, r: r, saver: r.NewBlobSaver(ctx, 2), want: map[string][]byte{}}
}

// open returns a fresh repository handle on be (index loaded).
func (fx *fixture) open(be backend.Backend) *repo.Repository {
	fx.t.Helper()
	r, err := repo.Open(fx.t.Context(), be, fx.key)
	if err != nil {
		fx.t.Fatal(err)
	}
	if err := r.LoadIndex(fx.t.Context()); err != nil {
		fx.t.Fatal(err)
	}
	return r
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// file builds a file node whose content is the concatenation of pieces,
// one blob each.
func (fx *fixture) file(name string, mode fs.FileMode, pieces ...[]byte) repo.Node {
	fx.t.Helper()
	n := repo.Node{Name: name, Type: repo.NodeFile, Mode: mode, ModTime: t0.Add(time.Duration(len(name)) * time.Hour)}
	for _, p := range pieces {
		id, _, err := fx.saver.Save(fx.t.Context(), repo.DataBlob, p)
		if err != nil {
			fx.t.Fatal(err)
		}
		n.Content = append(n.Content, id)
		n.Size += uint64(len(p))
	}
	return n
}

// dir builds a directory node from children (sorted here).
func (fx *fixture) dir(name string, mode fs.FileMode, children ...repo.Node) repo.Node {
	fx.t.Helper()
	id := fx.tree(children...)
	return repo.Node{Name: name, Type: repo.NodeDir, Mode: fs.ModeDir | mode, ModTime: t0.Add(-time.Duration(len(name)) * time.Minute), Subtree: &id}
}

func (fx *fixture) tree(children ...repo.Node) repo.ID {
	fx.t.Helper()
	slices.SortFunc(children, func(a, b repo.Node) int { return strings.Compare(a.Name, b.Name) })
	data, err := repo.EncodeTree(&repo.Tree{Nodes: children})
	if err != nil {
		fx.t.Fatal(err)
	}
	id, _, err := fx.saver.Save(fx.t.Context(), repo.TreeBlob, data)
	if err != nil {
		fx.t.Fatal(err)
	}
	return id
}

// rawTree stores a tree blob as given, bypassing EncodeTree's checks.
func (fx *fixture) rawTree(json string) repo.ID {
	fx.t.Helper()
	id, _, err := fx.saver.Save(fx.t.Context(), repo.TreeBlob, []byte(json))
	if err != nil {
		fx.t.Fatal(err)
	}
	return id
}

// snapshot finishes the saver and stores a snapshot of root.
func (fx *fixture) snapshot(root repo.ID) *repo.Snapshot {
	fx.t.Helper()
	ctx := fx.t.Context()
	if err := fx.saver.Finish(ctx); err != nil {
		fx.t.Fatal(err)
	}
	sn := &repo.Snapshot{Time: t0, Hostname: "shop", Paths: []string{"/"}, Tree: root, Program: "test"}
	if _, err := fx.r.SaveSnapshot(ctx, sn); err != nil {
		fx.t.Fatal(err)
	}
	fx.saver = fx.r.NewBlobSaver(ctx, 2)
	return sn
}

// recorder is a Progress that keeps what it was told.
type recorder struct {
	mu                 sync.Mutex
	files, bytes       int64
	done               map[string]int64
	errs               map[string]error
	startedF, startedB int64
	startCalls         int
}

func newRecorder() *recorder { return &recorder{done: map[string]int64{}, errs: map[string]error{}} }

func (p *recorder) Start(f, b int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startedF, p.startedB = f, b
	p.startCalls++
}

func (p *recorder) FileDone(path string, b int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[path] = b
}

func (p *recorder) Error(path string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[path] = err
}

// listTree returns every path below dir (relative), for "nothing else
// was written" checks.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalBytes(t testing.TB, p string, want []byte) {
	t.Helper()
	if got := mustRead(t, p); !bytes.Equal(got, want) {
		t.Fatalf("%s: content differs (%d bytes, want %d)", p, len(got), len(want))
	}
}
