// Package backend defines where a repository's files are stored.
//
// A Backend stores immutable, named files grouped by FileType. It knows
// nothing about encryption or the repository format. Implementations live in
// subpackages (local, sftp, mem); decorators (retry, fault injection) wrap the
// interface.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// FileType is the kind of a stored file; it decides the directory it lives in.
type FileType string

// The file types of a repository.
const (
	ConfigFile   FileType = "config"
	KeyFile      FileType = "keys"
	PackFile     FileType = "data"
	IndexFile    FileType = "index"
	SnapshotFile FileType = "snapshots"
	RefsFile     FileType = "refs"
	LockFile     FileType = "locks"
	// VerifiedFile records that a drill restored and verified a snapshot.
	VerifiedFile FileType = "verified"
)

// AllTypes lists every FileType in the order a check walks them.
var AllTypes = []FileType{ConfigFile, KeyFile, IndexFile, SnapshotFile, RefsFile, LockFile, VerifiedFile, PackFile}

// Handle names one stored file. For ConfigFile the Name is ignored.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Type == ConfigFile {
		return "config"
	}
	return string(h.Type) + "/" + h.Name
}

// Valid reports whether h can name a stored file. Names must be non-empty
// and must not contain path separators or dots-only components.
func (h Handle) Valid() error {
	if h.Type == ConfigFile {
		return nil
	}
	switch h.Type {
	case KeyFile, PackFile, IndexFile, SnapshotFile, RefsFile, LockFile, VerifiedFile:
	default:
		return fmt.Errorf("invalid file type %q", h.Type)
	}
	if h.Name == "" || h.Name == "." || h.Name == ".." {
		return fmt.Errorf("invalid name %q for %s", h.Name, h.Type)
	}
	for _, c := range h.Name {
		if c == '/' || c == '\\' || c == 0 {
			return fmt.Errorf("invalid name %q for %s", h.Name, h.Type)
		}
	}
	return nil
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name    string
	Size    int64
	ModTime time.Time // the storage's own modification time; zero if unknown
}

// ErrNoSpace is returned (wrapped) when the storage is full.
var ErrNoSpace = errors.New("no space left on the repository storage")

// ErrPermanent marks errors that retrying cannot fix (auth denied,
// permission denied, no space). Wrap with fmt.Errorf("...: %w: %w", ErrPermanent, err)
// or use Permanent.
var ErrPermanent = errors.New("permanent error")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (p permanentError) Error() string   { return p.err.Error() }
func (p permanentError) Unwrap() []error { return []error{p.err, ErrPermanent} }

// Backend stores the files of one repository.
//
// All methods are safe for concurrent use. Errors for files that do not
// exist satisfy errors.Is(err, fs.ErrNotExist).
type Backend interface {
	// Location returns a human-readable location without secrets.
	Location() string

	// Save stores size bytes read from r under h. The file appears
	// atomically (temporary name, sync, rename): a reader never sees a
	// partial file, and a failed Save leaves no file under h. Save may be
	// retried: r is rewound with Seek(0, io.SeekStart) as needed. Saving a
	// name that exists with the same content succeeds (idempotent).
	Save(ctx context.Context, h Handle, r io.ReadSeeker, size int64) error

	// Load calls fn with a reader of length bytes starting at offset off.
	// length 0 means to the end of the file. fn must not retain the reader.
	// If fn returns an error, Load returns it. If the file is shorter than
	// off+length, Load returns an error wrapping io.ErrUnexpectedEOF.
	// Load may call fn more than once when it retries; fn must then start over.
	Load(ctx context.Context, h Handle, off, length int64, fn func(io.Reader) error) error

	// Stat returns information about h.
	Stat(ctx context.Context, h Handle) (FileInfo, error)

	// List calls fn for each file of type t, in no particular order. If fn
	// returns an error, List stops and returns it.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error

	// Remove deletes h. Removing a file that does not exist returns an
	// error satisfying errors.Is(err, fs.ErrNotExist).
	Remove(ctx context.Context, h Handle) error

	// Close releases resources (connections). The Backend must not be used after.
	Close() error
}

// SpaceReporter is implemented by backends that can report free space.
type SpaceReporter interface {
	// FreeSpace returns the bytes available to this repository, or an
	// error if unknown.
	FreeSpace(ctx context.Context) (uint64, error)
}

// IsNotExist reports whether err means the file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// LoadAll reads the whole file h into memory. Use only for small files
// (config, keys, index, snapshots, locks).
func LoadAll(ctx context.Context, be Backend, h Handle) ([]byte, error) {
	var buf []byte
	err := be.Load(ctx, h, 0, 0, func(r io.Reader) error {
		var err error
		buf, err = io.ReadAll(r)
		return err
	})
	return buf, err
}

// FileCommitter is implemented by backends that can take a finished
// temporary file as it is instead of copying it (the local backend renames
// it into place). Packs are assembled in TempDir when it is offered.
type FileCommitter interface {
	// TempDir is a directory for temporary files on the same file system
	// as the repository.
	TempDir() string
	// CommitFile makes the file at path (size bytes, complete) the stored
	// file h: durably, atomically, and moving it (path no longer exists
	// afterwards when it succeeds).
	CommitFile(ctx context.Context, h Handle, path string, size int64) error
}
