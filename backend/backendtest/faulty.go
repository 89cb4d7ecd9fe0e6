package backendtest

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/shopvault/shopvault/backend"
)

// ErrInjected is the error Faulty returns for injected failures.
var ErrInjected = errors.New("injected fault")

// Faulty wraps a backend and fails operations on demand. Set its fields
// before use or under Lock.
type Faulty struct {
	backend.Backend

	mu sync.Mutex
	// FailSave, when non-nil, is consulted before each Save; a non-nil
	// result is returned instead of saving.
	FailSave func(h backend.Handle) error
	// FailLoad, when non-nil, is consulted before each Load.
	FailLoad func(h backend.Handle) error
	// Corrupt, when non-nil, may change the bytes a Load returns.
	Corrupt func(h backend.Handle, off int64, data []byte) []byte
	saves   int
}

// Saves returns how many Saves reached the wrapped backend.
func (f *Faulty) Saves() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

// Save implements backend.Backend.
func (f *Faulty) Save(ctx context.Context, h backend.Handle, r io.ReadSeeker, size int64) error {
	f.mu.Lock()
	fail := f.FailSave
	f.mu.Unlock()
	if fail != nil {
		if err := fail(h); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.saves++
	f.mu.Unlock()
	return f.Backend.Save(ctx, h, r, size)
}

// Load implements backend.Backend.
func (f *Faulty) Load(ctx context.Context, h backend.Handle, off, length int64, fn func(io.Reader) error) error {
	f.mu.Lock()
	fail, corrupt := f.FailLoad, f.Corrupt
	f.mu.Unlock()
	if fail != nil {
		if err := fail(h); err != nil {
			return err
		}
	}
	if corrupt == nil {
		return f.Backend.Load(ctx, h, off, length, fn)
	}
	return f.Backend.Load(ctx, h, off, length, func(r io.Reader) error {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return fn(bytesReader(corrupt(h, off, data)))
	})
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
