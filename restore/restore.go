// Package restore rebuilds files from a snapshot (the `dir` target) and
// verifies a restored tree against its snapshot.
//
// Restore works in phases:
//
//  1. plan: walk the selected part of the snapshot (trees loaded in
//     parallel, breadth first) and collect directories, files, hard-link
//     groups and special files;
//  2. directories are created (parents first, 0700 until the end), then
//     symlinks, fifos and device nodes (sockets are skipped with a warning);
//  3. files are prepared in parallel: each content blob's offset comes
//     from the index; with Overwrite, an existing file of the right size is
//     re-hashed blob by blob and only the blobs that differ are fetched
//     (resume); blobs that are all zeros are never fetched or written, so
//     sparse files keep their holes;
//  4. every needed pack is read once, front to back (repo.StreamPack),
//     Workers packs at a time (a pack of which only a small part is needed,
//     as for an include or a resume, is read blob by blob with ranged reads
//     instead; so is what a damaged pack did not deliver), and each blob is
//     written with pwrite to every
//     (file, offset) that needs it. A file is created with O_EXCL (and
//     O_NOFOLLOW) by the first write and truncated to its final size at
//     once, so an interrupted restore leaves files of the right size that a
//     rerun can repair blob by blob (a file of one blob is just written
//     whole); when its last blob is written, its owner, mode, xattrs and
//     mtime are applied on the open fd;
//  5. files that needed no fetch (empty, all holes, already correct), hard
//     links to the first restored path of each group, and finally directory
//     metadata, deepest first.
//
// Memory: the plan holds the selected tree nodes, one small record per
// file (~350 bytes plus its path) and one per needed blob occurrence
// (~60 bytes); the content itself streams through one blob buffer per
// worker, so memory does not grow with file size (a 20 GB file costs
// ~20k blob records, about 1 MB). Open file descriptors are bounded per
// worker, plus up to 1024 cached directory fds (a quarter of the open file
// limit when that is lower).
//
// Safety: every path is built from names validated with repo.ValidName and
// resolved one component at a time from the target's fd, each directory
// opened relative to its parent's fd with O_NOFOLLOW, so no symlink is ever
// traversed (see root); the directory fds are cached, so a file costs one
// single-name lookup. Existing entries
// in the way (Overwrite) are removed, never followed; an existing file that
// is hard-linked to something outside the restore is replaced, not written
// into. Linux only.
package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/shopvault/shopvault/repo"
)

// Options configure Restore and Verify.
type Options struct {
	// Target is the directory to restore into; it is created (0700) if
	// missing and must be empty unless Overwrite.
	Target string
	// Include lists snapshot paths ("/var/www/shop/config") whose subtrees
	// are restored, with their parent directories; empty means everything.
	Include []string
	// Rebase is a snapshot directory ("/var/www/shop") restored as the
	// Target itself: its contents land directly under Target (Target/index.php
	// for /var/www/shop/index.php) and nothing outside it is restored. Include
	// paths must lie inside it. The directory's own metadata is not applied
	// to Target. Verify with the same Rebase checks the same layout.
	Rebase string
	// Exclude lists glob patterns (path.Match) tried on the full snapshot
	// path and on the base name; a matching directory is skipped whole.
	Exclude []string
	// Overwrite allows a non-empty target. Existing files whose content
	// already matches are kept (counted as Skipped), so an interrupted
	// restore can be rerun; anything else in the way is replaced.
	Overwrite bool
	// Workers is the number of packs read in parallel, and of workers for
	// the per-file phases (default 4).
	Workers int
	// IgnoreErrors continues past damaged blobs and packs; the files that
	// needed them are listed in Result.Damaged. Without it the first
	// damaged pack stops the restore with an error naming it.
	IgnoreErrors bool
	// Owner restores numeric uid/gid. The CLI should default it to true
	// when running as root (a non-root user cannot give files away).
	Owner bool
	// Progress receives progress; nil means none.
	Progress Progress
	// Now is the clock for Result.Duration (nil: time.Now).
	Now func() time.Time
	// Verify (Restore only) re-reads every restored entry at the end and
	// checks it against the snapshot as Verify does, reusing the restore's
	// own plan instead of walking the snapshot's trees again; the outcome
	// is Result.Verify. Blobs are then not hashed when unpacked: the
	// re-read hashes every byte as it landed on disk, which proves more.
	Verify bool
}

// Progress receives restore progress. Its methods are called from several
// goroutines at once and must be safe for concurrent use and quick.
type Progress interface {
	// Start is called once after planning with the number of entries
	// (files, links, special files) and the bytes of file content selected.
	Start(totalFiles, totalBytes int64)
	// FileDone is called when an entry is complete (bytes: its size).
	FileDone(path string, bytes int64)
	// Error reports a file that could not be restored correctly, or,
	// when errors.Is(err, ErrWarning), something skipped on purpose
	// (sockets, devices without root, unsupported xattrs).
	Error(path string, err error)
}

// Result summarises a restore.
type Result struct {
	Files     int64 // regular files written (fully or partly)
	Dirs      int64
	Symlinks  int64
	Hardlinks int64 // extra names of hard-linked files
	Specials  int64 // fifos and devices
	Bytes     int64 // content bytes of the files written
	Written   int64 // bytes actually written (holes and kept blobs excluded)
	Skipped   int64 // files already correct in the target (resume), left alone
	// Damaged lists the snapshot paths of files not restored correctly.
	Damaged []string
	// Warnings lists things skipped on purpose, one line each.
	Warnings []string
	Duration time.Duration
	// Verify is the verification's outcome when Options.Verify was set.
	Verify *VerifyResult
	// VerifyDuration is the part of Duration spent verifying.
	VerifyDuration time.Duration
}

// ErrTargetNotEmpty is returned when the target holds files and Overwrite
// is not set.
var ErrTargetNotEmpty = errors.New("restore target is not empty")

// ErrNoSpace is wrapped in the error returned when the target's filesystem
// is full.
var ErrNoSpace = errors.New("no space left on the restore target")

// ErrWarning marks the errors passed to Progress.Error for things skipped
// on purpose rather than damaged.
var ErrWarning = errors.New("warning")

const maxWarnings = 1000

type fileJob struct {
	e      entry
	size   int64
	leader *fileJob   // for a hard-link follower: the file it links to
	group  []*fileJob // for a leader: its followers
	needs  []need
	zeros  []span // ranges to re-zero (resume over a file with data in a hole)
	// oneWrite: the file is one blob written whole by the pack phase, so
	// creating it need not truncate it to its size first (saves a
	// journalled syscall per small file)
	oneWrite bool

	mu       sync.Mutex
	exists   bool // present in the target (created by us, or kept)
	skipped  bool // already correct
	pending  int  // blob writes still to do
	damaged  error
	finished bool
	verified bool // content and xattrs checked when finished (Options.Verify)
}

type need struct {
	ie  repo.IndexEntry
	off int64
}

type span struct{ off, n int64 }

type target struct {
	f   *fileJob
	off int64
}

type blobReq struct {
	pb      repo.PackedBlob
	targets []target
	done    bool
}

type packJob struct {
	id    repo.ID
	blobs []*blobReq // sorted by offset
}

type restorer struct {
	// v checks each file's content as soon as it is finished, through the
	// fd that wrote it (Options.Verify); nil otherwise.
	v *verifier

	r   *repo.Repository
	o   Options
	rt  *root
	sel *selector

	dirs   []entry
	files  []*fileJob // leaders and plain files
	links  []*fileJob // hard-link followers
	others []entry

	zero zeroIDs

	mu       sync.Mutex
	res      Result
	xattrOff bool // the target refused xattrs once; warned

	files64, bytes, written, skipped, hardlinks, symlinks, specials atomic.Int64
}

// Restore writes the selected part of sn under o.Target. With IgnoreErrors,
// files that needed damaged or missing repository data are listed in
// Result.Damaged and the error is nil: the caller decides how to fail.
// Without it, the first damaged pack stops the restore with an error
// naming the pack and a file that needed it.
func Restore(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if !r.CanRead() {
		return nil, repo.ErrNeedRestoreKey
	}
	sel, err := newSelector(o.Include, o.Exclude, o.Rebase)
	if err != nil {
		return nil, err
	}
	// One sequential read per tree pack instead of a round trip per
	// directory; a failure here is reported again by the walk that needs
	// the tree, so it is not fatal.
	_, _ = r.PrefetchTrees(ctx, sn, repo.DefaultTreeBudget)
	if err := prepareTarget(o); err != nil {
		return nil, err
	}
	if err := sel.checkIncludes(ctx, r, sn.Tree); err != nil {
		return nil, err
	}
	rt, err := openRoot(o.Target)
	if err != nil {
		return nil, err
	}
	defer rt.close()
	rs := &restorer{r: r, o: o, rt: rt, sel: sel, zero: zeroIDs{r: r, m: map[uint32]repo.ID{}}}
	if o.Verify {
		vo := o
		vo.Progress = nil // the restore's progress covers it; problems are in the result
		rs.v = &verifier{r: r, o: vo, rt: rt}
	}
	if err := rs.plan(ctx, sn.Tree); err != nil {
		return nil, err
	}
	r.DropTrees() // planned: the walk is done, free the cached trees
	if err := rs.run(ctx); err != nil {
		return nil, err
	}
	res := rs.result()
	if o.Verify {
		vstart := o.Now()
		if res.Verify, err = rs.verify(ctx); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		res.VerifyDuration = o.Now().Sub(vstart)
	}
	res.Duration = o.Now().Sub(start)
	return res, nil
}

// verify checks the restored entries against the snapshot with the plan's
// own entry list (no second walk of the trees).
func (rs *restorer) verify(ctx context.Context) (*VerifyResult, error) {
	v := rs.v
	v.leaderOf = make(map[*repo.Node]*entry, len(rs.links))
	v.contentDone = make(map[*repo.Node]bool, len(rs.files))
	entries := make([]entry, 0, len(rs.dirs)+len(rs.files)+len(rs.links)+len(rs.others))
	entries = append(entries, rs.dirs...)
	for _, f := range rs.files {
		entries = append(entries, f.e)
		f.mu.Lock()
		if f.verified {
			v.contentDone[f.e.node] = true
		}
		f.mu.Unlock()
	}
	for _, f := range rs.links {
		entries = append(entries, f.e)
		v.leaderOf[f.e.node] = &f.leader.e
	}
	entries = append(entries, rs.others...)
	return v.run(ctx, entries)
}

func prepareTarget(o Options) error {
	if o.Target == "" {
		return errors.New("no restore target: pass --target DIR")
	}
	fi, err := os.Stat(o.Target)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(o.Target, 0o700); err != nil {
			return fmt.Errorf("create restore target: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("restore target %s is not a directory", o.Target)
	}
	if o.Overwrite {
		return nil
	}
	d, err := os.Open(o.Target)
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	defer d.Close()
	names, _ := d.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("%w: %s already holds files (e.g. %q); restore into an empty directory, or pass --overwrite to restore over it (files that already match the snapshot are kept)",
			ErrTargetNotEmpty, o.Target, names[0])
	}
	return nil
}

type inodeKey struct{ dev, ino uint64 }

// plan walks the selection and sorts the nodes into the restorer's lists.
func (rs *restorer) plan(ctx context.Context, tree repo.ID) error {
	leaders := map[inodeKey]*fileJob{}
	return walk(ctx, rs.r, tree, rs.sel, rs.o.Workers, func(e entry) error {
		n := e.node
		switch n.Type {
		case repo.NodeDir:
			rs.dirs = append(rs.dirs, e)
		case repo.NodeFile:
			f := &fileJob{e: e}
			if n.Links > 1 && n.Inode != 0 {
				k := inodeKey{n.DeviceID, n.Inode}
				if l := leaders[k]; l != nil && slices.Equal(l.e.node.Content, n.Content) {
					f.leader = l
					l.group = append(l.group, f)
					rs.links = append(rs.links, f)
					return nil
				}
				if leaders[k] == nil {
					leaders[k] = f
				}
			}
			rs.files = append(rs.files, f)
		default:
			rs.others = append(rs.others, e)
		}
		return nil
	})
}

func (rs *restorer) run(ctx context.Context) error {
	if p := rs.o.Progress; p != nil {
		var total, totalBytes int64 = int64(len(rs.links) + len(rs.others)), 0
		for _, f := range rs.files {
			total++
			totalBytes += int64(f.e.node.Size)
		}
		p.Start(total, totalBytes)
	}
	// directories, parents first: the walk is breadth first, so rs.dirs
	// is sorted by depth and each depth can be created in parallel
	if err := byDepth(ctx, rs.o.Workers, rs.dirs, rs.mkdir); err != nil {
		return err
	}
	// special files and symlinks
	if err := parallel(ctx, rs.o.Workers, len(rs.others), func(_ context.Context, _, i int) error {
		return rs.makeOther(rs.others[i])
	}); err != nil {
		return err
	}
	// file layouts and resume checks
	bufs := make([][]byte, rs.o.Workers)
	if err := parallel(ctx, rs.o.Workers, len(rs.files), func(_ context.Context, w, i int) error {
		return rs.prepare(rs.files[i], &bufs[w])
	}); err != nil {
		return err
	}
	bufs = nil
	if err := rs.runPacks(ctx, rs.packPlan()); err != nil {
		return err
	}
	// files that needed no fetch (empty, sparse, kept), and damaged ones
	if err := parallel(ctx, rs.o.Workers, len(rs.files), func(_ context.Context, _, i int) error {
		return rs.finishIdle(rs.files[i])
	}); err != nil {
		return err
	}
	for _, f := range rs.links {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rs.makeLink(f); err != nil {
			return err
		}
	}
	// directory metadata, deepest first, so that creating children does
	// not change a finished directory's mtime
	dirs := slices.Clone(rs.dirs)
	sort.SliceStable(dirs, func(i, j int) bool { return dirs[i].depth > dirs[j].depth })
	return byDepth(ctx, rs.o.Workers, dirs, rs.dirMeta)
}

// byDepth runs fn over dirs (sorted by depth, either way), one depth at a
// time, in parallel within a depth.
func byDepth(ctx context.Context, workers int, dirs []entry, fn func(entry) error) error {
	for len(dirs) > 0 {
		n := 1
		for n < len(dirs) && dirs[n].depth == dirs[0].depth {
			n++
		}
		batch := dirs[:n]
		if err := parallel(ctx, workers, len(batch), func(_ context.Context, _, i int) error { return fn(batch[i]) }); err != nil {
			return err
		}
		dirs = dirs[n:]
	}
	return nil
}

// parallel calls fn(worker, i) for i in [0, n) on a fixed number of
// goroutines; the first error cancels the rest.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, w, i int) error) error {
	if n == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := 0; w < min(workers, n); w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := fn(gctx, w, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

func (rs *restorer) result() *Result {
	rs.mu.Lock()
	res := rs.res
	rs.mu.Unlock()
	res.Files = rs.files64.Load()
	res.Dirs = int64(len(rs.dirs))
	res.Bytes = rs.bytes.Load()
	res.Written = rs.written.Load()
	res.Skipped = rs.skipped.Load()
	res.Hardlinks = rs.hardlinks.Load()
	res.Symlinks = rs.symlinks.Load()
	res.Specials = rs.specials.Load()
	sort.Strings(res.Damaged)
	return &res
}

func (rs *restorer) warn(p, msg string) {
	rs.mu.Lock()
	if len(rs.res.Warnings) < maxWarnings {
		rs.res.Warnings = append(rs.res.Warnings, p+": "+msg)
	}
	rs.mu.Unlock()
	if rs.o.Progress != nil {
		rs.o.Progress.Error(p, fmt.Errorf("%w: %s", ErrWarning, msg))
	}
}

// damage records that f cannot be restored correctly. Without
// IgnoreErrors it returns the error that stops the restore.
func (rs *restorer) damage(f *fileJob, err error) error {
	f.mu.Lock()
	first := f.damaged == nil
	if first {
		f.damaged = err
	}
	f.mu.Unlock()
	if !rs.o.IgnoreErrors {
		return fmt.Errorf("restore %s: %w (pass --ignore-errors to restore everything else)", f.e.path, err)
	}
	if first {
		if rs.o.Progress != nil {
			rs.o.Progress.Error(f.e.path, err)
		}
	}
	return nil
}

func (rs *restorer) mkdir(d entry) error {
	err := rs.rt.at(d.rel, func(pfd int, name string) error {
		err := unix.Mkdirat(pfd, name, 0o700)
		if err == unix.EEXIST && rs.o.Overwrite {
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return nil
			}
			if err := rs.rt.removeAt(pfd, name, d.rel); err != nil {
				return err
			}
			err = unix.Mkdirat(pfd, name, 0o700)
		}
		return err
	})
	if err != nil {
		return rs.rt.pathErr("create directory", d.rel, err)
	}
	return nil
}

func (rs *restorer) dirMeta(d entry) error {
	fd, err := rs.rt.open(d.rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return rs.rt.pathErr("open directory", d.rel, err)
	}
	defer unix.Close(fd)
	return rs.applyMeta(fd, d)
}

// zeroIDs caches the blob id of an all-zero blob per length.
type zeroIDs struct {
	r  *repo.Repository
	mu sync.Mutex
	m  map[uint32]repo.ID
}

// is reports whether the blob is all zeros. Only blobs that compressed
// extremely well are candidates, so ordinary data costs no hashing.
func (z *zeroIDs) is(ie repo.IndexEntry) bool {
	if ie.RawLength == 0 || uint64(ie.Length)*64 > uint64(ie.RawLength) {
		return false
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	id, ok := z.m[ie.RawLength]
	if !ok {
		id = z.r.BlobID(make([]byte, ie.RawLength))
		z.m[ie.RawLength] = id
	}
	return id == ie.ID
}

// prepare computes f's layout and, with Overwrite, which blobs an existing
// file already holds.
func (rs *restorer) prepare(f *fileJob, buf *[]byte) error {
	n := f.e.node
	layout := make([]need, 0, len(n.Content))
	var off int64
	for _, id := range n.Content {
		ie, ok := rs.r.Index().Lookup(repo.BlobHandle{Type: repo.DataBlob, ID: id})
		if !ok {
			if err := rs.damage(f, fmt.Errorf("data blob %s is not in the index (run 'shopvault check')", id.Short())); err != nil {
				return err
			}
			off = -1
			break
		}
		layout = append(layout, need{ie: ie, off: off})
		off += int64(ie.RawLength)
	}
	if off < 0 {
		f.size = int64(n.Size)
	} else {
		f.size = off
		if off != int64(n.Size) {
			if err := rs.damage(f, fmt.Errorf("the snapshot gives size %d but the content is %d bytes", n.Size, off)); err != nil {
				return err
			}
		}
	}
	differs := func(int) bool { return true }
	if rs.o.Overwrite {
		mism, err := rs.checkExisting(f, layout, buf)
		if err != nil {
			return err
		}
		if mism != nil {
			differs = func(i int) bool { return mism[i] }
		}
	}
	for i, l := range layout {
		if f.exists && !differs(i) {
			continue
		}
		if rs.zero.is(l.ie) {
			if f.exists {
				f.zeros = append(f.zeros, span{l.off, int64(l.ie.RawLength)})
			}
			continue
		}
		f.needs = append(f.needs, l)
	}
	if f.exists && len(f.needs) == 0 && len(f.zeros) == 0 && f.damaged == nil {
		f.skipped = true
	}
	f.oneWrite = !f.exists && len(layout) == 1 && len(f.needs) == 1
	return nil
}

// checkExisting looks at what is at f's path. It returns, for a kept
// regular file, which layout blobs differ; nil when the path was cleared
// for a fresh file.
func (rs *restorer) checkExisting(f *fileJob, layout []need, buf *[]byte) ([]bool, error) {
	rel := f.e.rel
	fresh := func() ([]bool, error) {
		if err := rs.rt.remove(rel); err != nil {
			return nil, rs.rt.pathErr("remove", rel, err)
		}
		return nil, nil
	}
	// look before opening: opening a device or fifo can have side effects
	lst, err := rs.rt.lstat(rel)
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return nil, rs.rt.pathErr("stat", rel, err)
	}
	if lst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fresh()
	}
	fd, err := rs.rt.open(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return fresh() // a symlink, a socket, unreadable: replace it
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, rs.rt.pathErr("stat", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != f.size || len(layout) != len(f.e.node.Content) {
		return fresh()
	}
	if st.Nlink > 1 && !rs.groupOwns(f, &st) {
		// hard-linked to something this restore does not own (possibly
		// outside the target): never write through it
		return fresh()
	}
	mism := make([]bool, len(layout))
	for i, l := range layout {
		n := int(l.ie.RawLength)
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		b := (*buf)[:n]
		if err := preadFull(fd, b, l.off); err != nil {
			return nil, rs.rt.pathErr("read", rel, err)
		}
		mism[i] = rs.r.BlobID(b) != l.ie.ID
	}
	if slices.Contains(mism, true) && os.Geteuid() != 0 {
		_ = unix.Fchmod(fd, 0o600) // we will write into it
	}
	f.exists = true
	return mism, nil
}

// groupOwns reports whether every link of the inode st is one of f's
// hard-link group's paths in the target.
func (rs *restorer) groupOwns(f *fileJob, st *unix.Stat_t) bool {
	if len(f.group) == 0 {
		return false
	}
	count := uint64(1)
	for _, g := range f.group {
		gst, err := rs.rt.lstat(g.e.rel)
		if err == nil && gst.Dev == st.Dev && gst.Ino == st.Ino {
			count++
		}
	}
	return count == uint64(st.Nlink)
}

func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("unexpected end of file at offset %d", off)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// packPlan groups the needed blobs by pack, each pack's blobs by offset,
// packs in the order the walk first needs them.
func (rs *restorer) packPlan() []*packJob {
	packs := map[repo.ID]*packJob{}
	var order []*packJob
	reqs := map[repo.BlobHandle]*blobReq{}
	for _, f := range rs.files {
		for _, n := range f.needs {
			req := reqs[n.ie.BlobHandle]
			if req == nil {
				req = &blobReq{pb: n.ie.PackedBlob}
				reqs[n.ie.BlobHandle] = req
				pj := packs[n.ie.Pack]
				if pj == nil {
					pj = &packJob{id: n.ie.Pack}
					packs[n.ie.Pack] = pj
					order = append(order, pj)
				}
				pj.blobs = append(pj.blobs, req)
			}
			req.targets = append(req.targets, target{f: f, off: n.off})
			f.pending++
		}
		f.needs = nil
	}
	for _, pj := range order {
		slices.SortFunc(pj.blobs, func(a, b *blobReq) int { return int(a.pb.Offset) - int(b.pb.Offset) })
	}
	return order
}

// localError marks a failure on the target (as opposed to the repository).
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func (rs *restorer) runPacks(ctx context.Context, packs []*packJob) error {
	bufs := make([][]byte, rs.o.Workers)
	return parallel(ctx, rs.o.Workers, len(packs), func(ctx context.Context, w, i int) error {
		return rs.processPack(ctx, packs[i], &bufs[w])
	})
}

// maxOpenPerPack bounds the files a worker keeps open within one pack.
const maxOpenPerPack = 64

// A pack whose needed blobs make up less than 1/sparsePackRatio of the
// bytes up to the last of them (and at least sparsePackMin) is read blob
// by blob rather than streamed.
const (
	sparsePackMin   = 1 << 20
	sparsePackRatio = 4
)

func (rs *restorer) processPack(ctx context.Context, pj *packJob, buf *[]byte) error {
	inPack := map[*fileJob]int{}
	for _, b := range pj.blobs {
		for _, t := range b.targets {
			inPack[t.f]++
		}
	}
	left := make(map[*fileJob]int, len(inPack))
	for f, n := range inPack {
		left[f] = n
	}
	open := map[*fileJob]int{}
	defer func() {
		for _, fd := range open {
			unix.Close(fd)
		}
	}()
	// doneWith accounts one target of f; when f has nothing left in this
	// pack its fd is released, and when nothing left at all it is finished.
	doneWith := func(f *fileJob) error {
		left[f]--
		if left[f] > 0 {
			return nil
		}
		fd, ok := open[f]
		if !ok {
			fd = -1
		}
		delete(open, f)
		f.mu.Lock()
		f.pending -= inPack[f]
		last := f.pending == 0
		f.mu.Unlock()
		var err error
		if last && fd >= 0 {
			err = rs.finishFile(f, fd)
		} // else: finishIdle completes it (created if need be)
		if fd >= 0 {
			unix.Close(fd)
		}
		return err
	}
	deliver := func(req *blobReq, data []byte) error {
		for _, t := range req.targets {
			fd, ok := open[t.f]
			if !ok {
				if len(open) >= maxOpenPerPack {
					for f, fd := range open {
						unix.Close(fd)
						delete(open, f)
					}
				}
				var err error
				if fd, err = rs.openForWrite(t.f); err != nil {
					return &localError{err}
				}
				open[t.f] = fd
			}
			if err := pwriteFull(fd, data, t.off); err != nil {
				return &localError{rs.rt.pathErr("write", t.f.e.rel, err)}
			}
			rs.written.Add(int64(len(data)))
			if err := doneWith(t.f); err != nil {
				return &localError{err}
			}
		}
		req.done = true
		return nil
	}
	find := func(b repo.PackedBlob) *blobReq {
		i := sort.Search(len(pj.blobs), func(i int) bool { return pj.blobs[i].pb.Offset >= b.Offset })
		if i < len(pj.blobs) && pj.blobs[i].pb.BlobHandle == b.BlobHandle {
			return pj.blobs[i]
		}
		return nil
	}
	// A pack is streamed from its start up to its last needed blob. When
	// only a small part of that is needed (a restore of a few files, a
	// resume), the blobs are read one by one with ranged reads instead.
	var needed, end int64
	for _, b := range pj.blobs {
		needed += int64(b.pb.Length)
		end = int64(b.pb.Offset) + int64(b.pb.Length)
	}
	if end < sparsePackMin || needed*sparsePackRatio >= end {
		pbs := make([]repo.PackedBlob, len(pj.blobs))
		for i, b := range pj.blobs {
			pbs[i] = b.pb
		}
		stream := rs.r.StreamPack
		if rs.o.Verify {
			stream = rs.r.StreamPackUnhashed // verify() hashes what landed on disk
		}
		err := stream(ctx, pj.id, pbs, func(b repo.PackedBlob, data []byte) error {
			req := find(b)
			if req == nil || req.done {
				return nil // a retried stream delivers blobs again
			}
			return deliver(req, data)
		})
		if err == nil {
			return nil
		}
		var le *localError
		if errors.As(err, &le) {
			return le.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	// Blob by blob: a sparse need, or what a damaged or unreadable pack
	// did not deliver (age authenticates 64 KiB chunks separately, so
	// blobs away from the damage are still readable).
	for _, req := range pj.blobs {
		if req.done {
			continue
		}
		data, lerr := rs.r.LoadBlob(ctx, req.pb.BlobHandle, *buf)
		if lerr == nil {
			*buf = data
			if err := deliver(req, data); err != nil {
				var le *localError
				if errors.As(err, &le) {
					return le.err
				}
				return err
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, t := range req.targets {
			derr := fmt.Errorf("blob %s at offset %d of pack %s: %w", req.pb.ID.Short(), t.off, pj.id.Short(), lerr)
			if err := rs.damage(t.f, derr); err != nil {
				return err
			}
			if err := doneWith(t.f); err != nil {
				return err
			}
		}
		req.done = true
	}
	return nil
}

// openForWrite opens f for writing, creating it (O_EXCL, truncated to its
// size) the first time.
func (rs *restorer) openForWrite(f *fileJob) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.exists {
		fd, err := rs.rt.open(f.e.rel, rs.writeFlag(), 0)
		if err != nil {
			return -1, rs.rt.pathErr("open", f.e.rel, err)
		}
		return fd, nil
	}
	fd, err := rs.create(f, !f.oneWrite)
	if err != nil {
		return -1, err
	}
	f.exists = true
	return fd, nil
}

// writeFlag is how files are opened for writing: read-write when they are
// verified through the same fd.
func (rs *restorer) writeFlag() int {
	if rs.v != nil {
		return unix.O_RDWR
	}
	return unix.O_WRONLY
}

// create makes f's file (which must not exist), truncated to its final
// size when truncate is set.
func (rs *restorer) create(f *fileJob, truncate bool) (int, error) {
	fd, err := rs.rt.open(f.e.rel, rs.writeFlag()|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return -1, rs.rt.pathErr("create", f.e.rel, err)
	}
	if truncate && f.size > 0 {
		if err := unix.Ftruncate(fd, f.size); err != nil {
			unix.Close(fd)
			return -1, rs.rt.pathErr("truncate", f.e.rel, err)
		}
	}
	return fd, nil
}

// finishIdle completes a file that the pack phase did not finish.
func (rs *restorer) finishIdle(f *fileJob) error {
	f.mu.Lock()
	if f.finished {
		f.mu.Unlock()
		return nil
	}
	var fd int
	var err error
	switch {
	case !f.exists:
		fd, err = rs.create(f, true)
		f.exists = err == nil
	case len(f.zeros) > 0:
		fd, err = rs.rt.open(f.e.rel, rs.writeFlag(), 0)
	default:
		fd, err = rs.rt.open(f.e.rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	}
	f.mu.Unlock()
	if err != nil {
		return rs.rt.pathErr("open", f.e.rel, err)
	}
	defer unix.Close(fd)
	return rs.finishFile(f, fd)
}

var zeroBlock = make([]byte, 64<<10)

// zeroRange turns a range back into a hole, or writes zeros where the
// filesystem cannot punch holes.
func zeroRange(fd int, z span) error {
	if unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, z.off, z.n) == nil {
		return nil
	}
	for z.n > 0 {
		n := min(z.n, int64(len(zeroBlock)))
		if err := pwriteFull(fd, zeroBlock[:n], z.off); err != nil {
			return err
		}
		z.off, z.n = z.off+n, z.n-n
	}
	return nil
}

// finishFile re-zeroes f's stale holes and applies its metadata on fd
// (writable when f has holes to re-zero), and counts it.
func (rs *restorer) finishFile(f *fileJob, fd int) error {
	for _, z := range f.zeros {
		if err := zeroRange(fd, z); err != nil {
			return rs.rt.pathErr("zero", f.e.rel, err)
		}
	}
	if err := rs.applyMeta(fd, f.e); err != nil {
		return err
	}
	verified := false
	if rs.v != nil && f.leader == nil {
		// Re-read what landed through this fd now, while the file is hot
		// and open (no second open and lookup); the final pass still
		// checks every entry's metadata after the whole restore.
		verified = rs.v.checkOpenFile(f.e, fd)
	}
	f.mu.Lock()
	f.finished = true
	f.verified = verified
	damaged, skipped := f.damaged, f.skipped
	f.mu.Unlock()
	switch {
	case damaged != nil:
		rs.mu.Lock()
		rs.res.Damaged = append(rs.res.Damaged, f.e.path)
		rs.mu.Unlock()
	case skipped:
		rs.skipped.Add(1)
	default:
		rs.files64.Add(1)
		rs.bytes.Add(f.size)
	}
	if rs.o.Progress != nil {
		rs.o.Progress.FileDone(f.e.path, f.size)
	}
	return nil
}

// makeLink restores a hard-link follower as a link to its leader.
func (rs *restorer) makeLink(f *fileJob) error {
	l := f.leader
	if rs.o.Overwrite {
		lst, err := rs.rt.lstat(l.e.rel)
		if err != nil {
			return rs.rt.pathErr("stat", l.e.rel, err)
		}
		st, err := rs.rt.lstat(f.e.rel)
		if err == nil && st.Dev == lst.Dev && st.Ino == lst.Ino {
			rs.hardlinks.Add(1)
			return nil // already linked
		}
		if err := rs.rt.remove(f.e.rel); err != nil {
			return rs.rt.pathErr("remove", f.e.rel, err)
		}
	}
	if err := rs.rt.link(l.e.rel, f.e.rel); err != nil {
		return rs.rt.pathErr("link", f.e.rel, err)
	}
	l.mu.Lock()
	damaged := l.damaged
	l.mu.Unlock()
	if damaged != nil {
		rs.mu.Lock()
		rs.res.Damaged = append(rs.res.Damaged, f.e.path)
		rs.mu.Unlock()
	} else {
		rs.hardlinks.Add(1)
	}
	if rs.o.Progress != nil {
		rs.o.Progress.FileDone(f.e.path, 0)
	}
	return nil
}

// makeOther creates a symlink, fifo or device node with its metadata.
func (rs *restorer) makeOther(e entry) error {
	n := e.node
	var mode uint32
	switch n.Type {
	case repo.NodeSocket:
		rs.warn(e.path, "socket not restored (sockets are created by the program that listens on them)")
		return nil
	case repo.NodeFifo:
		mode = unix.S_IFIFO
	case repo.NodeDev:
		mode = unix.S_IFBLK
	case repo.NodeCharDev:
		mode = unix.S_IFCHR
	case repo.NodeSymlink:
	default:
		return fmt.Errorf("restore %s: unknown node type %q", e.path, n.Type)
	}
	var skipped bool
	var metaErr error
	err := rs.rt.at(e.rel, func(pfd int, name string) error {
		if rs.o.Overwrite {
			if err := rs.rt.removeAt(pfd, name, e.rel); err != nil {
				return err
			}
		}
		var err error
		if n.Type == repo.NodeSymlink {
			err = unix.Symlinkat(n.LinkTarget, pfd, name)
		} else {
			err = unix.Mknodat(pfd, name, mode|0o600, int(n.Device))
			if err == unix.EPERM && n.Type != repo.NodeFifo {
				skipped = true
				return nil
			}
		}
		if err != nil {
			return err
		}
		metaErr = rs.applyMetaAt(pfd, name, e)
		return nil
	})
	if err != nil {
		return rs.rt.pathErr("create "+string(n.Type), e.rel, err)
	}
	if metaErr != nil {
		return metaErr
	}
	switch {
	case skipped:
		rs.warn(e.path, "device node not restored: creating devices needs root")
		return nil
	case n.Type == repo.NodeSymlink:
		rs.symlinks.Add(1)
	default:
		rs.specials.Add(1)
	}
	if rs.o.Progress != nil {
		rs.o.Progress.FileDone(e.path, 0)
	}
	return nil
}

// unixMode converts a Go file mode's permission and special bits.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

// timespecs gives atime and mtime for utimensat (atime = mtime: the
// snapshot has no atime). Seconds and nanoseconds are taken apart so
// that dates outside int64 nanoseconds (years before 1678) do not wrap.
func timespecs(t time.Time) []unix.Timespec {
	ts := unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	return []unix.Timespec{ts, ts}
}

// applyMeta sets owner, mode, xattrs and mtime through an open fd (regular
// files and directories). Owner goes first: chown clears setuid bits.
func (rs *restorer) applyMeta(fd int, e entry) error {
	n := e.node
	if rs.o.Owner {
		if err := unix.Fchown(fd, int(n.UID), int(n.GID)); err != nil {
			if err := rs.metaErr(e, "set owner", err); err != nil {
				return err
			}
		}
	}
	if err := unix.Fchmod(fd, unixMode(n.Mode)); err != nil {
		if err := rs.metaErr(e, "set mode", err); err != nil {
			return err
		}
	}
	for _, x := range n.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			rs.xattrWarn(e, x.Name, err)
		}
	}
	if err := futimens(fd, timespecs(n.ModTime)); err != nil {
		if err := rs.metaErr(e, "set mtime", err); err != nil {
			return err
		}
	}
	return nil
}

// applyMetaAt sets metadata on a symlink, fifo or device by name.
func (rs *restorer) applyMetaAt(pfd int, name string, e entry) error {
	n := e.node
	if rs.o.Owner {
		if err := unix.Fchownat(pfd, name, int(n.UID), int(n.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err := rs.metaErr(e, "set owner", err); err != nil {
				return err
			}
		}
	}
	if n.Type != repo.NodeSymlink {
		if err := unix.Fchmodat(pfd, name, unixMode(n.Mode), 0); err != nil {
			if err := rs.metaErr(e, "set mode", err); err != nil {
				return err
			}
		}
	}
	for _, x := range n.Xattrs {
		p := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, name)
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			rs.xattrWarn(e, x.Name, err)
		}
	}
	if err := unix.UtimesNanoAt(pfd, name, timespecs(n.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err := rs.metaErr(e, "set mtime", err); err != nil {
			return err
		}
	}
	return nil
}

func (rs *restorer) metaErr(e entry, what string, err error) error {
	hint := ""
	if err == unix.EPERM && what == "set owner" {
		hint = " (restoring owners needs root; restore without owners otherwise)"
	}
	if rs.o.IgnoreErrors {
		rs.warn(e.path, fmt.Sprintf("%s: %v%s", what, err, hint))
		return nil
	}
	return fmt.Errorf("%s of %s: %w%s", what, rs.rt.full(e.rel), err, hint)
}

func (rs *restorer) xattrWarn(e entry, name string, err error) {
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		rs.mu.Lock()
		once := !rs.xattrOff
		rs.xattrOff = true
		rs.mu.Unlock()
		if once {
			rs.warn(e.path, fmt.Sprintf("the target filesystem does not support extended attributes (%s and later ones skipped)", name))
		}
		return
	}
	rs.warn(e.path, fmt.Sprintf("extended attribute %s not restored: %v", name, err))
}
