// Package chunk splits streams into content-defined chunks with
// github.com/restic/chunker, using a repository's secret polynomial.
package chunk

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Params are the chunking parameters of one kind of stream. They are part
// of a repository's format: changing them changes every chunk boundary.
type Params struct {
	// MinSize and MaxSize bound a chunk's length in bytes.
	MinSize, MaxSize uint
	// AverageBits sets the average chunk size to 2^AverageBits bytes.
	AverageBits int
}

// FileParams are the default parameters for file contents (1 MiB average,
// like restic): large chunks keep the index small for images and archives.
var FileParams = Params{MinSize: 512 << 10, MaxSize: 8 << 20, AverageBits: 20}

// SQLParams are the default parameters for database dump streams. SQL dumps
// change in many small places each night; smaller chunks re-store less
// (see shared/bench/README.md: 64 KiB re-stores ~11% of a dump per day,
// 16 KiB ~5%).
var SQLParams = Params{MinSize: 8 << 10, MaxSize: 256 << 10, AverageBits: 15}

// Validate reports whether p can be used.
func (p Params) Validate() error {
	switch {
	case p.AverageBits < 10 || p.AverageBits > 24:
		return fmt.Errorf("chunk average bits %d out of range 10..24", p.AverageBits)
	case p.MinSize == 0 || p.MinSize >= p.MaxSize:
		return fmt.Errorf("chunk sizes min %d max %d are invalid", p.MinSize, p.MaxSize)
	case p.MaxSize > 64<<20:
		return fmt.Errorf("chunk max size %d exceeds 64 MiB", p.MaxSize)
	}
	return nil
}

// Pol is a chunker polynomial. It is secret: it decides where boundaries fall.
type Pol = chunker.Pol

// RandomPol returns a new random irreducible polynomial.
func RandomPol() (Pol, error) { return chunker.RandomPolynomial() }

// Chunker cuts a stream into chunks. Reuse it with Reset to avoid
// allocating its internal buffer for every file.
type Chunker struct {
	c   *chunker.Chunker
	p   Params
	pol Pol
}

// New returns a chunker for r.
func New(r io.Reader, pol Pol, p Params) *Chunker {
	c := chunker.NewWithBoundaries(r, pol, p.MinSize, p.MaxSize)
	c.SetAverageBits(p.AverageBits)
	return &Chunker{c: c, p: p, pol: pol}
}

// Reset makes the chunker read r from its start.
func (c *Chunker) Reset(r io.Reader) {
	c.c.ResetWithBoundaries(r, c.pol, c.p.MinSize, c.p.MaxSize)
	c.c.SetAverageBits(c.p.AverageBits)
}

// Next returns the next chunk, using buf as storage when it is large
// enough (pass a buffer of MaxSize bytes to avoid allocation). At the end
// of the stream it returns io.EOF.
func (c *Chunker) Next(buf []byte) ([]byte, error) {
	ch, err := c.c.Next(buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	return ch.Data, nil
}
