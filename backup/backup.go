// Package backup walks file trees and database dumps into one snapshot.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/chunk"
	"github.com/shopvault/shopvault/repo"
)

// ErrPartial is returned (wrapped) when the snapshot was written but some
// files could not be read. The snapshot is valid and restorable.
var ErrPartial = errors.New("snapshot is partial: some files could not be read")

// Progress receives events from a running backup. Methods are called from
// several goroutines. A nil Progress is allowed.
type Progress interface {
	// FileDone is called once per regular file; read is the number of
	// bytes actually read (0 when the change cache said it is unchanged).
	FileDone(path string, size, read int64)
	// Warn reports a file that could not be backed up.
	Warn(path string, err error)
}

// Options configure a backup.
type Options struct {
	Paths         []string
	Excludes      []string
	ExcludeCaches bool
	Tags          []string
	Hostname      string
	// CacheDir holds the change cache; "" disables it.
	CacheDir string
	// Workers read and chunk files in parallel (default: 2).
	Workers int
	// Uploaders upload packs in parallel (default: 2).
	Uploaders int
	Source    FileSource
	Progress  Progress
	Now       func() time.Time
	// DB, when set, dumps databases into /db/<database>/ of the snapshot.
	DB *DBSource
}

// Result describes a finished backup.
type Result struct {
	Snapshot *repo.Snapshot
	Warnings []string
}

type future struct {
	done  chan struct{}
	node  *repo.Node  // nil: omitted (warning already reported)
	cache *cacheEntry // for regular files: what the change cache records
	err   error
}

func newFuture() *future { return &future{done: make(chan struct{})} }

func (f *future) resolve(n *repo.Node, err error) {
	f.node, f.err = n, err
	close(f.done)
}

type fileJob struct {
	path   string
	fi     fs.FileInfo
	cached *cacheEntry
	fut    *future
}

type archiver struct {
	r       *repo.Repository
	saver   *repo.BlobSaver
	o       Options
	matcher *Matcher
	cache   *dirCache
	jobs    chan fileJob

	mu       sync.Mutex
	refs     []repo.BlobHandle // with duplicates; sorted and compacted at the end
	warnings []string
	stats    repo.SnapshotStats
	users    map[uint32]string
	groups   map[uint32]string

	pendingDirs sync.WaitGroup
	rootTree    *repo.Tree // when "/" itself is backed up
	cacheWarned bool
}

// Run backs up o.Paths (and o.DB) into r as one snapshot. r must have its
// index loaded. On error no snapshot is written. When some files could
// not be read the snapshot is written, marked partial, and the returned
// error wraps ErrPartial.
func Run(ctx context.Context, r *repo.Repository, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == nil {
		o.Source = OS{}
	}
	if o.Workers < 1 {
		o.Workers = 2
	}
	if o.Uploaders < 1 {
		o.Uploaders = 2
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	start := o.Now()
	paths, err := cleanPaths(o.Source, o.Paths)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 && o.DB == nil {
		return nil, errors.New("nothing to back up: give at least one path or database")
	}
	m, err := NewMatcher(o.Excludes)
	if err != nil {
		return nil, err
	}
	a := &archiver{
		r: r, o: o, matcher: m,
		cache: newDirCache(o.CacheDir, r.Config().ID, start),
		jobs:  make(chan fileJob, 64),
		users: map[uint32]string{}, groups: map[uint32]string{},
	}
	unlock, err := a.cache.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.saver = r.NewBlobSaver(ctx, o.Uploaders)
	finished := false
	defer func() {
		if !finished {
			a.saver.Abort()
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < o.Workers; i++ {
		g.Go(func() error { return a.fileWorker(gctx) })
	}
	var rootNodes []repo.Node
	var dbInfo *repo.DBInfo
	var dbNode *repo.Node
	g.Go(func() error {
		defer close(a.jobs)
		var err error
		rootNodes, err = a.walkRoots(gctx, paths)
		return err
	})
	if o.DB != nil {
		g.Go(func() error {
			var err error
			dbNode, dbInfo, err = a.dumpDatabases(gctx, o.DB)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if dbNode != nil {
		rootNodes = append(rootNodes, *dbNode)
		slices.SortFunc(rootNodes, func(x, y repo.Node) int { return strings.Compare(x.Name, y.Name) })
	}
	rootID, err := a.saveTree(ctx, &repo.Tree{Nodes: rootNodes})
	if err != nil {
		return nil, err
	}
	if err := a.saver.Finish(ctx); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	finished = true

	refsID, err := r.SaveRefs(ctx, a.refs, parentRefs(ctx, r, o.Hostname, paths))
	if err != nil {
		return nil, err
	}
	st := a.saver.Stats()
	a.stats.BlobsAdded, a.stats.BytesAdded, a.stats.StoredAdded = st.Blobs, st.RawBytes, st.StoredBytes
	a.stats.Errors = int64(len(a.warnings))
	a.stats.DurationSecs = o.Now().Sub(start).Seconds()
	username := ""
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	sn := &repo.Snapshot{
		Time: start, Hostname: o.Hostname, Username: username, Tags: o.Tags, Paths: paths,
		Tree: rootID, Refs: refsID, Partial: len(a.warnings) > 0, Stats: a.stats, DB: dbInfo,
		Program: "shopvault",
	}
	if _, err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, err
	}
	a.cache.sweep()
	res := &Result{Snapshot: sn, Warnings: a.warnings}
	if sn.Partial {
		return res, fmt.Errorf("%w (%d warnings)", ErrPartial, len(a.warnings))
	}
	return res, nil
}

// cleanPaths makes paths absolute and clean, refuses missing ones and
// drops paths inside another given path.
func cleanPaths(src FileSource, in []string) ([]string, error) {
	var out []string
	for _, p := range in {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		if _, err := src.Lstat(abs); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s does not exist: check the path (nothing was backed up)", p)
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if abs == "/db" || strings.HasPrefix(abs, "/db/") {
			return nil, fmt.Errorf("%s: /db is reserved for database dumps in snapshots", p)
		}
		out = append(out, abs)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	var res []string
	for _, p := range out {
		if len(res) > 0 {
			last := res[len(res)-1]
			if last == "/" || strings.HasPrefix(p, last+"/") {
				continue
			}
		}
		res = append(res, p)
	}
	return res, nil
}

func (a *archiver) warn(p string, err error) {
	a.mu.Lock()
	a.warnings = append(a.warnings, fmt.Sprintf("%s: %v", p, err))
	a.mu.Unlock()
	if a.o.Progress != nil {
		a.o.Progress.Warn(p, err)
	}
}

func (a *archiver) addRef(h repo.BlobHandle) {
	a.mu.Lock()
	a.refs = append(a.refs, h)
	a.mu.Unlock()
}

// walkRoots archives every path and builds the intermediate directories
// from the root ("/var/www/shop" -> var -> www -> shop).
func (a *archiver) walkRoots(ctx context.Context, paths []string) ([]repo.Node, error) {
	type vdir struct {
		children map[string]*vdir
		fut      *future // set for archived paths
	}
	root := &vdir{children: map[string]*vdir{}}
	for _, p := range paths {
		cur := root
		if p != "/" {
			for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
				next := cur.children[c]
				if next == nil {
					next = &vdir{children: map[string]*vdir{}}
					cur.children[c] = next
				}
				cur = next
			}
		}
		fi, err := a.o.Source.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if p == "/" {
			fut := a.archive(ctx, p, fi)
			select {
			case <-fut.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if fut.err != nil {
				return nil, fut.err
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.rootTree == nil {
				return nil, errors.New("/ is not a directory")
			}
			return a.rootTree.Nodes, nil
		}
		cur.fut = a.archive(ctx, p, fi)
	}
	// Resolve the virtual directories bottom up.
	var build func(dir string, v *vdir) ([]repo.Node, error)
	build = func(dir string, v *vdir) ([]repo.Node, error) {
		names := make([]string, 0, len(v.children))
		for n := range v.children {
			names = append(names, n)
		}
		slices.Sort(names)
		var nodes []repo.Node
		for _, n := range names {
			child := v.children[n]
			p := path.Join(dir, n)
			if child.fut != nil {
				select {
				case <-child.fut.done:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if child.fut.err != nil {
					return nil, child.fut.err
				}
				if child.fut.node != nil {
					nodes = append(nodes, *child.fut.node)
				}
				continue
			}
			sub, err := build(p, child)
			if err != nil {
				return nil, err
			}
			fi, err := a.o.Source.Lstat(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			node, _ := a.nodeFromInfo(n, p, fi)
			id, err := a.saveTree(ctx, &repo.Tree{Nodes: sub})
			if err != nil {
				return nil, err
			}
			node.Subtree = &id
			nodes = append(nodes, node)
		}
		return nodes, nil
	}
	return build("/", root)
}

// archive starts archiving p and returns a future of its node.
func (a *archiver) archive(ctx context.Context, p string, fi fs.FileInfo) *future {
	fut := newFuture()
	name := path.Base(p)
	switch {
	case fi.Mode().IsRegular():
		a.submit(ctx, fileJob{path: p, fi: fi, fut: fut}, nil)
	case fi.IsDir():
		a.archiveDir(ctx, p, fi, fut)
	default:
		node, _ := a.nodeFromInfo(name, p, fi)
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := a.o.Source.Readlink(p)
			if err != nil {
				a.warn(p, err)
				fut.resolve(nil, nil)
				return fut
			}
			node.LinkTarget = target
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			a.warn(p, errors.New("socket skipped"))
			fut.resolve(nil, nil)
			return fut
		}
		fut.resolve(&node, nil)
	}
	return fut
}

func (a *archiver) submit(ctx context.Context, job fileJob, cached map[string]*cacheEntry) {
	if cached != nil {
		job.cached = cached[path.Base(job.path)]
	}
	select {
	case a.jobs <- job:
	case <-ctx.Done():
		job.fut.resolve(nil, ctx.Err())
	}
}

func (a *archiver) excluded(p string, isDir bool) bool {
	if a.matcher.Excluded(p) {
		return true
	}
	if isDir && a.o.ExcludeCaches {
		if f, err := a.o.Source.Open(path.Join(p, "CACHEDIR.TAG")); err == nil {
			buf := make([]byte, len(cacheDirTagSignature))
			n, _ := io.ReadFull(f, buf)
			f.Close()
			if string(buf[:n]) == cacheDirTagSignature {
				return true
			}
		}
	}
	return false
}

func (a *archiver) archiveDir(ctx context.Context, p string, fi fs.FileInfo, fut *future) {
	names, err := a.o.Source.ReadDirNames(p)
	if err != nil {
		a.warn(p, err)
		if errors.Is(err, fs.ErrNotExist) {
			fut.resolve(nil, nil)
			return
		}
		names = nil // keep the directory itself, without contents
	}
	cached, oldCache := a.cache.load(p)
	children := make([]*future, 0, len(names))
	for _, n := range names {
		if ctx.Err() != nil {
			break
		}
		cp := path.Join(p, n)
		cfi, err := a.o.Source.Lstat(cp)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				a.warn(cp, err)
			}
			continue
		}
		if a.excluded(cp, cfi.IsDir()) {
			continue
		}
		if cfi.Mode().IsRegular() {
			cf := newFuture()
			a.submit(ctx, fileJob{path: cp, fi: cfi, fut: cf}, cached)
			children = append(children, cf)
			continue
		}
		children = append(children, a.archive(ctx, cp, cfi))
	}
	node, _ := a.nodeFromInfo(path.Base(p), p, fi)
	a.mu.Lock()
	a.stats.Dirs++
	a.mu.Unlock()
	a.pendingDirs.Add(1)
	go func() {
		defer a.pendingDirs.Done()
		var nodes []repo.Node
		var entries []cacheEntry
		for _, c := range children {
			select {
			case <-c.done:
			case <-ctx.Done():
				fut.resolve(nil, ctx.Err())
				return
			}
			if c.err != nil {
				fut.resolve(nil, c.err)
				return
			}
			if c.node == nil {
				continue
			}
			nodes = append(nodes, *c.node)
			if c.cache != nil {
				entries = append(entries, *c.cache)
			}
		}
		t := &repo.Tree{Nodes: nodes}
		id, err := a.saveTree(ctx, t)
		if err != nil {
			fut.resolve(nil, err)
			return
		}
		if p == "/" {
			a.mu.Lock()
			a.rootTree = t
			a.mu.Unlock()
		}
		if err := a.cache.store(p, entries, oldCache); err != nil {
			a.warnCache(err)
		}
		node.Subtree = &id
		fut.resolve(&node, nil)
	}()
}

func (a *archiver) warnCache(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.cacheWarned {
		a.cacheWarned = true
		a.warnings = append(a.warnings, fmt.Sprintf("change cache: %v (the next backup re-reads files)", err))
	}
}

func (a *archiver) saveTree(ctx context.Context, t *repo.Tree) (repo.ID, error) {
	data, err := repo.EncodeTree(t)
	if err != nil {
		return repo.ID{}, err
	}
	id, _, err := a.saver.Save(ctx, repo.TreeBlob, data)
	if err != nil {
		return repo.ID{}, err
	}
	a.addRef(repo.BlobHandle{Type: repo.TreeBlob, ID: id})
	return id, nil
}

func (a *archiver) lookupUser(uid uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.users[uid]; ok {
		return n
	}
	n := ""
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		n = u.Username
	}
	a.users[uid] = n
	return n
}

func (a *archiver) lookupGroup(gid uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.groups[gid]; ok {
		return n
	}
	n := ""
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		n = g.Name
	}
	a.groups[gid] = n
	return n
}

// nodeFromInfo builds a node from lstat information; it also returns the
// change time (not stored in trees: it cannot be restored).
func (a *archiver) nodeFromInfo(name, p string, fi fs.FileInfo) (repo.Node, int64) {
	var ctime int64
	n := repo.Node{Name: name, Mode: fi.Mode(), ModTime: fi.ModTime().UTC()}
	m := fi.Mode()
	switch {
	case m.IsRegular():
		n.Type = repo.NodeFile
		n.Size = uint64(fi.Size())
	case m.IsDir():
		n.Type = repo.NodeDir
	case m&fs.ModeSymlink != 0:
		n.Type = repo.NodeSymlink
	case m&fs.ModeNamedPipe != 0:
		n.Type = repo.NodeFifo
	case m&fs.ModeSocket != 0:
		n.Type = repo.NodeSocket
	case m&fs.ModeCharDevice != 0:
		n.Type = repo.NodeCharDev
	case m&fs.ModeDevice != 0:
		n.Type = repo.NodeDev
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
		n.User, n.Group = a.lookupUser(st.Uid), a.lookupGroup(st.Gid)
		n.Inode, n.DeviceID, n.Links = st.Ino, uint64(st.Dev), uint64(st.Nlink)
		if n.Type == repo.NodeDir {
			n.Links = 0 // directory link counts change with subdirectories; not needed
		}
		if n.Type == repo.NodeDev || n.Type == repo.NodeCharDev {
			n.Device = uint64(st.Rdev)
		}
		ctime = st.Ctim.Nano()
	}
	if xs, err := a.o.Source.Xattrs(p); err == nil {
		for _, x := range xs {
			n.Xattrs = append(n.Xattrs, repo.Xattr{Name: x.Name, Value: x.Value})
		}
	}
	return n, ctime
}

// fileWorker reads files, chunks them and saves their blobs.
func (a *archiver) fileWorker(ctx context.Context) error {
	pol := a.r.Polynomial()
	params := a.r.Config().FileChunks
	buf := make([]byte, params.MaxSize)
	ch := chunk.New(nil, pol, params)
	for job := range a.jobs {
		node, ctime, err := a.saveFile(ctx, job, ch, buf, params)
		if err != nil {
			// Fatal (upload failed, cancelled): stop the whole backup.
			job.fut.resolve(nil, err)
			return err
		}
		if node != nil {
			job.fut.cache = &cacheEntry{Name: node.Name, Inode: node.Inode, Size: node.Size, MtimeNs: node.ModTime.UnixNano(), CtimeNs: ctime, Content: node.Content}
		}
		job.fut.resolve(node, nil)
	}
	return nil
}

func (a *archiver) saveFile(ctx context.Context, job fileJob, ch *chunk.Chunker, buf []byte, params chunk.Params) (*repo.Node, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	node, ctime := a.nodeFromInfo(path.Base(job.path), job.path, job.fi)
	// Unchanged since the last backup and every blob still indexed?
	if c := job.cached; c != nil && c.Inode == node.Inode && c.Size == node.Size &&
		c.MtimeNs == node.ModTime.UnixNano() && c.CtimeNs == ctime && a.allKnown(c.Content) {
		node.Content = c.Content
		for _, id := range c.Content {
			a.addRef(repo.BlobHandle{Type: repo.DataBlob, ID: id})
		}
		a.fileDone(job.path, int64(node.Size), 0)
		return &node, ctime, nil
	}
	f, err := a.o.Source.Open(job.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			a.warn(job.path, errors.New("vanished during the backup"))
		} else {
			a.warn(job.path, err)
		}
		return nil, 0, nil
	}
	defer f.Close()
	var read int64
	var content []repo.ID
	save := func(data []byte) error {
		id, _, err := a.saver.Save(ctx, repo.DataBlob, data)
		if err != nil {
			return err
		}
		content = append(content, id)
		a.addRef(repo.BlobHandle{Type: repo.DataBlob, ID: id})
		read += int64(len(data))
		return nil
	}
	if node.Size < uint64(params.MinSize) {
		// Small file: one blob, no chunker.
		n, err := io.ReadFull(f, buf[:node.Size+1])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			a.warn(job.path, err)
			return nil, 0, nil
		}
		if n > 0 || node.Size == 0 {
			if n > 0 {
				if err := save(buf[:n]); err != nil {
					return nil, 0, err
				}
			}
		}
	} else {
		ch.Reset(f)
		for {
			data, err := ch.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, 0, ctx.Err()
				}
				a.warn(job.path, err)
				return nil, 0, nil
			}
			if err := save(data); err != nil {
				return nil, 0, err
			}
		}
	}
	if uint64(read) != node.Size {
		// The file changed while we read it: record what we read.
		node.Size = uint64(read)
	}
	node.Content = content
	a.fileDone(job.path, read, read)
	return &node, ctime, nil
}

func (a *archiver) allKnown(ids []repo.ID) bool {
	for _, id := range ids {
		if !a.saver.Known(repo.BlobHandle{Type: repo.DataBlob, ID: id}) {
			return false
		}
	}
	return true
}

func (a *archiver) fileDone(p string, size, read int64) {
	a.mu.Lock()
	a.stats.Files++
	a.stats.Bytes += size
	a.stats.BytesRead += read
	a.mu.Unlock()
	if a.o.Progress != nil {
		a.o.Progress.FileDone(p, size, read)
	}
}

// parentRefs returns the refs id of the newest snapshot of the same host
// and paths (zero if none), so the new refs list is stored as a delta.
func parentRefs(ctx context.Context, r *repo.Repository, host string, paths []string) repo.ID {
	sns, _ := r.Snapshots(ctx)
	for i := len(sns) - 1; i >= 0; i-- {
		if sns[i].Hostname == host && slices.Equal(sns[i].Paths, paths) {
			return sns[i].Refs
		}
	}
	return repo.ID{}
}
