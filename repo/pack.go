package repo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A pack's plaintext is its blobs concatenated, then a header, then an
// 8-byte trailer: the header length (uint32, little endian) and the magic
// "SVP1". The whole plaintext is one age file; the storage sees only the
// pack's total size.
//
// Header entries, one per blob in file order:
//
//	type u8 | id [32]byte | uvarint offset | uvarint length | uvarint raw length
//
// length == raw length means stored uncompressed; otherwise zstd.

var packMagic = [4]byte{'S', 'V', 'P', '1'}

const packTrailerSize = 8

// maxPackHeader bounds the header a reader will allocate for.
const maxPackHeader = 64 << 20

// PackedBlob locates one blob inside a pack.
type PackedBlob struct {
	BlobHandle
	Offset    uint32
	Length    uint32
	RawLength uint32
}

// Compressed reports whether the blob is stored zstd-compressed.
func (b PackedBlob) Compressed() bool { return b.Length != b.RawLength }

func appendPackHeader(dst []byte, blobs []PackedBlob) []byte {
	for _, b := range blobs {
		dst = append(dst, byte(b.Type))
		dst = append(dst, b.ID[:]...)
		dst = binary.AppendUvarint(dst, uint64(b.Offset))
		dst = binary.AppendUvarint(dst, uint64(b.Length))
		dst = binary.AppendUvarint(dst, uint64(b.RawLength))
	}
	return dst
}

func appendPackTrailer(dst []byte, headerLen int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(headerLen))
	return append(dst, packMagic[:]...)
}

// parsePackTrailer returns the header length from the last 8 bytes.
func parsePackTrailer(trailer []byte, plainSize int64) (int, error) {
	if len(trailer) != packTrailerSize {
		return 0, errors.New("short pack trailer")
	}
	if [4]byte(trailer[4:]) != packMagic {
		return 0, errors.New("pack trailer has no magic: not a pack, or truncated")
	}
	n := int64(binary.LittleEndian.Uint32(trailer))
	if n > maxPackHeader || n > plainSize-packTrailerSize {
		return 0, fmt.Errorf("pack header length %d does not fit the pack (%d bytes)", n, plainSize)
	}
	return int(n), nil
}

// parsePackHeader decodes a header; dataEnd is where the blobs end (the
// header's own offset). Every blob must lie within [0, dataEnd) and blobs
// must not overlap.
func parsePackHeader(hdr []byte, dataEnd int64) ([]PackedBlob, error) {
	var blobs []PackedBlob
	var next uint64
	for len(hdr) > 0 {
		if len(hdr) < 33 {
			return nil, errors.New("truncated pack header entry")
		}
		var b PackedBlob
		b.Type = BlobType(hdr[0])
		if b.Type != DataBlob && b.Type != TreeBlob {
			return nil, fmt.Errorf("unknown blob type %d in pack header", hdr[0])
		}
		copy(b.ID[:], hdr[1:33])
		hdr = hdr[33:]
		var vals [3]uint64
		for i := range vals {
			v, n := binary.Uvarint(hdr)
			if n <= 0 || v > 1<<32-1 {
				return nil, errors.New("bad number in pack header")
			}
			vals[i] = v
			hdr = hdr[n:]
		}
		if vals[0] != next || vals[0]+vals[1] > uint64(dataEnd) {
			return nil, fmt.Errorf("blob %s at %d+%d does not fit the pack", b.ID.Short(), vals[0], vals[1])
		}
		if vals[1] > vals[2] || vals[2] > maxBlobSize {
			return nil, fmt.Errorf("blob %s has bad lengths %d/%d", b.ID.Short(), vals[1], vals[2])
		}
		next = vals[0] + vals[1]
		b.Offset, b.Length, b.RawLength = uint32(vals[0]), uint32(vals[1]), uint32(vals[2])
		blobs = append(blobs, b)
	}
	if next != uint64(dataEnd) {
		return nil, fmt.Errorf("pack header covers %d bytes of %d", next, dataEnd)
	}
	return blobs, nil
}

// maxBlobSize bounds one blob's plaintext (a chunk or a tree).
const maxBlobSize = 256 << 20

// readPackHeader reads the header of a decrypted pack through ra.
func readPackHeader(ra io.ReaderAt, plainSize int64) ([]PackedBlob, error) {
	if plainSize < packTrailerSize {
		return nil, errors.New("pack too small")
	}
	var tr [packTrailerSize]byte
	if _, err := ra.ReadAt(tr[:], plainSize-packTrailerSize); err != nil {
		return nil, fmt.Errorf("read pack trailer: %w", err)
	}
	n, err := parsePackTrailer(tr[:], plainSize)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, n)
	start := plainSize - packTrailerSize - int64(n)
	if _, err := ra.ReadAt(hdr, start); err != nil {
		return nil, fmt.Errorf("read pack header: %w", err)
	}
	return parsePackHeader(hdr, start)
}
