package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/repo"
)

// Problem is one difference between a restored tree and its snapshot.
type Problem struct {
	Path string `json:"path"` // snapshot path
	What string `json:"what"`
}

func (p Problem) String() string { return p.Path + ": " + p.What }

// VerifyResult is what Verify found.
type VerifyResult struct {
	Files    int64     `json:"files"`    // entries checked (files, links, special files)
	Dirs     int64     `json:"dirs"`     // directories checked
	Bytes    int64     `json:"bytes"`    // file content bytes re-hashed
	Problems []Problem `json:"problems"` // sorted by path
}

// OK reports whether the restored tree matches the snapshot.
func (v *VerifyResult) OK() bool { return len(v.Problems) == 0 }

// Verify re-reads the restored tree under o.Target and compares every
// selected entry with the snapshot: type, mode (with setuid/setgid/sticky),
// size, mtime, symlink target, device number, owner (when o.Owner),
// extended attributes (where the filesystem has them), that hard links
// share one inode, and every file's content, by re-hashing each content
// blob's byte range with the repository's keyed blob hash. Files in the
// target that are not in the snapshot are not reported. Sockets are not
// checked (Restore does not create them).
//
// Verify reads trees, so it needs the restore key, but it never reads data
// packs: only the index (for blob lengths) and the restored files. The
// caller loads the index. It follows no symlink inside the target.
func Verify(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o Options) (*VerifyResult, error) {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Target == "" {
		return nil, errors.New("no restore target to verify: pass --target DIR")
	}
	sel, err := newSelector(o.Include, o.Exclude, o.Rebase)
	if err != nil {
		return nil, err
	}
	// One sequential read per tree pack instead of a round trip per
	// directory; a failure here is reported again by the walk that needs
	// the tree, so it is not fatal.
	_, _ = r.PrefetchTrees(ctx, sn, repo.DefaultTreeBudget)
	if err := sel.checkIncludes(ctx, r, sn.Tree); err != nil {
		return nil, err
	}
	rt, err := openRoot(o.Target)
	if err != nil {
		return nil, err
	}
	defer rt.close()

	v := &verifier{r: r, o: o, rt: rt, leaderOf: map[*repo.Node]*entry{}}
	leaders := map[inodeKey]*entry{}
	var entries []entry
	var totalBytes int64
	if err := walk(ctx, r, sn.Tree, sel, o.Workers, func(e entry) error {
		entries = append(entries, e)
		n := e.node
		if n.Type == repo.NodeFile {
			totalBytes += int64(n.Size)
		}
		if n.Type == repo.NodeFile && n.Links > 1 && n.Inode != 0 {
			k := inodeKey{n.DeviceID, n.Inode}
			if l := leaders[k]; l != nil && slices.Equal(l.node.Content, n.Content) {
				v.leaderOf[n] = l
			} else if l == nil {
				le := e
				leaders[k] = &le
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress.Start(int64(len(entries)), totalBytes)
	}
	return v.run(ctx, entries)
}

// run checks entries in parallel.
func (v *verifier) run(ctx context.Context, entries []entry) (*VerifyResult, error) {
	bufs := make([]*hashBuf, v.o.Workers)
	for w := range bufs {
		bufs[w] = &hashBuf{h: v.r.Hasher()}
	}
	if err := parallel(ctx, v.o.Workers, len(entries), func(_ context.Context, w, i int) error {
		v.check(entries[i], bufs[w])
		return nil
	}); err != nil {
		return nil, err
	}
	res := &VerifyResult{Files: v.files.Load(), Dirs: v.dirs.Load(), Bytes: v.bytes.Load(), Problems: v.problems}
	sort.SliceStable(res.Problems, func(i, j int) bool { return res.Problems[i].Path < res.Problems[j].Path })
	return res, nil
}

type verifier struct {
	r        *repo.Repository
	o        Options
	rt       *root
	leaderOf map[*repo.Node]*entry // hard-link followers -> leader
	// contentDone marks files whose content and xattrs were checked
	// through their own fd when the restore finished them.
	contentDone map[*repo.Node]bool
	hashBufs    sync.Pool // *hashBuf for checkOpenFile

	mu       sync.Mutex
	problems []Problem

	files, dirs, bytes atomic.Int64
}

func (v *verifier) problem(e entry, format string, args ...any) {
	p := Problem{Path: e.path, What: fmt.Sprintf(format, args...)}
	v.mu.Lock()
	v.problems = append(v.problems, p)
	v.mu.Unlock()
	if v.o.Progress != nil {
		v.o.Progress.Error(e.path, errors.New(p.What))
	}
}

var wantType = map[repo.NodeType]uint32{
	repo.NodeFile: unix.S_IFREG, repo.NodeDir: unix.S_IFDIR, repo.NodeSymlink: unix.S_IFLNK,
	repo.NodeDev: unix.S_IFBLK, repo.NodeCharDev: unix.S_IFCHR, repo.NodeFifo: unix.S_IFIFO,
}

func typeName(mode uint32) string {
	for t, m := range wantType {
		if mode&unix.S_IFMT == m {
			return string(t)
		}
	}
	if mode&unix.S_IFMT == unix.S_IFSOCK {
		return "socket"
	}
	return fmt.Sprintf("type %o", mode&unix.S_IFMT)
}

// hashBuf is a verify worker's keyed hasher and read buffer: content is
// hashed in pieces, so memory does not grow with the biggest blob (8 MiB).
type hashBuf struct {
	h   *blake3.Hasher
	buf []byte
}

const hashPiece = 256 << 10

func (v *verifier) check(e entry, buf *hashBuf) {
	n := e.node
	if n.Type == repo.NodeSocket {
		return
	}
	if n.Type == repo.NodeDir {
		v.dirs.Add(1)
	} else {
		v.files.Add(1)
	}
	defer func() {
		if v.o.Progress != nil && n.Type != repo.NodeDir {
			v.o.Progress.FileDone(e.path, int64(n.Size))
		}
	}()
	st, err := v.rt.lstat(e.rel)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			v.problem(e, "missing")
		} else {
			v.problem(e, "cannot be checked: %v", v.rt.pathErr("stat", e.rel, err))
		}
		return
	}
	if st.Mode&unix.S_IFMT != wantType[n.Type] {
		v.problem(e, "is a %s, the snapshot has a %s", typeName(st.Mode), n.Type)
		return
	}
	if n.Type != repo.NodeSymlink {
		if got, want := st.Mode&0o7777, unixMode(n.Mode); got != want {
			v.problem(e, "mode %04o, the snapshot has %04o", got, want)
		}
	}
	if v.o.Owner && (st.Uid != n.UID || st.Gid != n.GID) {
		v.problem(e, "owner %d:%d, the snapshot has %d:%d", st.Uid, st.Gid, n.UID, n.GID)
	}
	if st.Mtim.Sec != n.ModTime.Unix() || st.Mtim.Nsec != int64(n.ModTime.Nanosecond()) {
		got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
		v.problem(e, "mtime %s, the snapshot has %s", got.Format(time.RFC3339Nano), n.ModTime.UTC().Format(time.RFC3339Nano))
	}
	switch n.Type {
	case repo.NodeSymlink:
		var got string
		err := v.rt.at(e.rel, func(pfd int, name string) error {
			b := make([]byte, 4096)
			k, err := unix.Readlinkat(pfd, name, b)
			got = string(b[:max(k, 0)])
			return err
		})
		if err != nil {
			v.problem(e, "cannot read the symlink: %v", err)
		} else if got != n.LinkTarget {
			v.problem(e, "symlink points to %q, the snapshot has %q", got, n.LinkTarget)
		}
	case repo.NodeDev, repo.NodeCharDev:
		if st.Rdev != n.Device {
			v.problem(e, "device number %#x, the snapshot has %#x", st.Rdev, n.Device)
		}
	case repo.NodeFile:
		if st.Size != int64(n.Size) {
			v.problem(e, "size %d, the snapshot has %d", st.Size, n.Size)
		}
		if l := v.leaderOf[n]; l != nil {
			lst, err := v.rt.lstat(l.rel)
			if err != nil || lst.Dev != st.Dev || lst.Ino != st.Ino {
				v.problem(e, "is not a hard link to %s as in the snapshot", l.path)
			}
			return // content and xattrs are the leader's
		}
	}
	if v.contentDone[n] {
		return // content and xattrs checked when the file was finished
	}
	// open only what has content or xattrs to read (lstat covered the rest)
	if (n.Type == repo.NodeFile && n.Size > 0) || ((n.Type == repo.NodeFile || n.Type == repo.NodeDir) && len(n.Xattrs) > 0) {
		flags := unix.O_RDONLY | unix.O_NONBLOCK
		if n.Type == repo.NodeDir {
			flags |= unix.O_DIRECTORY
		}
		fd, err := v.rt.open(e.rel, flags, 0)
		if err != nil {
			v.problem(e, "cannot be opened: %v", err)
			return
		}
		defer unix.Close(fd)
		v.checkXattrs(e, fd)
		if n.Type == repo.NodeFile && st.Size == int64(n.Size) {
			v.checkContent(e, fd, buf)
		}
	}
}

// checkOpenFile checks a regular file's content and xattrs through fd
// (open for reading), as check does after its lstat. It reports false when
// the file's size is not the snapshot's: then the final pass checks it whole.
func (v *verifier) checkOpenFile(e entry, fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != int64(e.node.Size) {
		return false
	}
	hb, _ := v.hashBufs.Get().(*hashBuf)
	if hb == nil {
		hb = &hashBuf{h: v.r.Hasher()}
	}
	v.checkXattrs(e, fd)
	if e.node.Size > 0 {
		v.checkContent(e, fd, hb)
	}
	v.hashBufs.Put(hb)
	return true
}

func (v *verifier) checkXattrs(e entry, fd int) {
	for _, x := range e.node.Xattrs {
		b := make([]byte, len(x.Value)+1)
		k, err := unix.Fgetxattr(fd, x.Name, b)
		switch {
		case err == unix.ENOTSUP || err == unix.EOPNOTSUPP:
			return // the filesystem has no xattrs: Restore warned
		case err == unix.ENODATA:
			v.problem(e, "extended attribute %s is missing", x.Name)
		case err == unix.ERANGE || (err == nil && !bytes.Equal(b[:k], x.Value)):
			v.problem(e, "extended attribute %s differs", x.Name)
		case err != nil:
			v.problem(e, "extended attribute %s cannot be read: %v", x.Name, err)
		}
	}
}

func (v *verifier) checkContent(e entry, fd int, hb *hashBuf) {
	if hb.buf == nil {
		hb.buf = make([]byte, hashPiece)
	}
	var off int64
	for _, id := range e.node.Content {
		ie, ok := v.r.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: id})
		if !ok {
			v.problem(e, "data blob %s is not in the index: content cannot be verified", id.Short())
			return
		}
		n := int64(ie.RawLength)
		hb.h.Reset() // keeps the key
		for done := int64(0); done < n; {
			b := hb.buf[:min(int64(len(hb.buf)), n-done)]
			if err := preadFull(fd, b, off+done); err != nil {
				v.problem(e, "read at offset %d: %v", off+done, err)
				return
			}
			_, _ = hb.h.Write(b)
			done += int64(len(b))
		}
		v.bytes.Add(n)
		var got repo.ID
		hb.h.Sum(got[:0])
		if got != id {
			v.problem(e, "content differs from the snapshot in bytes %d-%d", off, off+n-1)
			return
		}
		off += n
	}
}
