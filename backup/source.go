package backup

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// FileSource is how the archiver reads the file system. OS is the real
// one; tests wrap it to count or fail reads.
type FileSource interface {
	Lstat(path string) (fs.FileInfo, error)
	// ReadDirNames returns the names in a directory, sorted.
	ReadDirNames(path string) ([]string, error)
	Readlink(path string) (string, error)
	// Open opens a regular file for reading without following symlinks.
	Open(path string) (io.ReadCloser, error)
	// Xattrs returns a path's extended attributes (nil when unsupported).
	Xattrs(path string) ([]Xattr, error)
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// OS reads the local file system.
type OS struct{}

// Lstat implements FileSource.
func (OS) Lstat(path string) (fs.FileInfo, error) { return os.Lstat(path) }

// ReadDirNames implements FileSource.
func (OS) ReadDirNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// Readlink implements FileSource.
func (OS) Readlink(path string) (string, error) { return os.Readlink(path) }

// Open implements FileSource.
func (OS) Open(path string) (io.ReadCloser, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		// O_NOATIME is only allowed to the file's owner or root.
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, err
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	return f, nil
}

// Xattrs implements FileSource.
func (OS) Xattrs(path string) ([]Xattr, error) {
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ERANGE) {
		sz, err2 := unix.Llistxattr(path, nil)
		if err2 != nil {
			return nil, err2
		}
		buf = make([]byte, sz)
		n, err = unix.Llistxattr(path, buf)
	}
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	var out []Xattr
	for _, name := range splitNul(buf[:n]) {
		sz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, sz)
		sz, err = unix.Lgetxattr(path, name, val)
		if err != nil {
			continue
		}
		out = append(out, Xattr{Name: name, Value: val[:sz]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}
