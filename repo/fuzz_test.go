package repo

import (
	"encoding/binary"
	"slices"
	"testing"
)

func FuzzDecodeIndex(f *testing.F) {
	f.Add(EncodeIndex([]IndexPack{{ID: ID{1}, Size: 100, Blobs: []PackedBlob{{BlobHandle: BlobHandle{Type: DataBlob, ID: ID{2}}, Offset: 0, Length: 10, RawLength: 20}}}}))
	f.Add(encodeIndexV1([]IndexPack{{ID: ID{1}, Size: 100, Blobs: []PackedBlob{{BlobHandle: BlobHandle{Type: DataBlob, ID: ID{2}}, Offset: 0, Length: 10, RawLength: 20}}}}))
	f.Add([]byte("SVIX\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		packs, err := DecodeIndex(data)
		if err != nil {
			return
		}
		again, err := DecodeIndex(EncodeIndex(packs))
		if err != nil || len(again) != len(packs) {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		for i, p := range packs {
			want := slices.SortedStableFunc(slices.Values(p.Blobs), byOffset)
			if again[i].ID != p.ID || again[i].Size != p.Size || !slices.Equal(again[i].Blobs, want) {
				t.Fatalf("pack %d decodes differently after re-encoding", i)
			}
		}
	})
}

func FuzzPackHeader(f *testing.F) {
	blobs := []PackedBlob{{BlobHandle: BlobHandle{Type: DataBlob, ID: ID{2}}, Offset: 0, Length: 10, RawLength: 20}, {BlobHandle: BlobHandle{Type: TreeBlob, ID: ID{3}}, Offset: 10, Length: 5, RawLength: 5}}
	hdr := appendPackHeader(nil, blobs)
	f.Add(hdr, int64(15))
	f.Add([]byte{1, 2, 3}, int64(0))
	f.Fuzz(func(t *testing.T, hdr []byte, dataEnd int64) {
		got, err := parsePackHeader(hdr, dataEnd)
		if err != nil {
			return
		}
		var end int64
		for _, b := range got {
			if int64(b.Offset) != end {
				t.Fatal("accepted a header with gaps")
			}
			end += int64(b.Length)
		}
		if end != dataEnd {
			t.Fatal("accepted a header that does not cover the data")
		}
		_, _ = parsePackTrailer(appendPackTrailer(nil, len(hdr)), dataEnd+int64(len(hdr))+packTrailerSize)
	})
}

func FuzzDecodeTree(f *testing.F) {
	sub := ID{9}
	good, _ := EncodeTree(&Tree{Nodes: []Node{{Name: "a", Type: NodeFile, Content: []ID{{1}}}, {Name: "b", Type: NodeDir, Subtree: &sub}}})
	f.Add(good)
	f.Add([]byte(`{"nodes":[{"name":"..","type":"dir","subtree":"` + sub.String() + `"}]}`))
	f.Add([]byte(`{"nodes":[{"name":"a/b","type":"file"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTree(data)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes {
			if ValidName(n.Name) != nil {
				t.Fatalf("accepted unsafe name %q", n.Name)
			}
		}
		if _, err := EncodeTree(tr); err != nil {
			t.Fatalf("decoded tree does not re-encode: %v", err)
		}
	})
}

func FuzzDecodeRefs(f *testing.F) {
	f.Add(encodeRefs([]BlobHandle{{Type: DataBlob, ID: ID{1}}, {Type: TreeBlob, ID: ID{2}}}))
	f.Add(legacyRefs([]BlobHandle{{Type: DataBlob, ID: ID{1}}, {Type: TreeBlob, ID: ID{2}}}))
	parent := ID{5}
	f.Add(append(append(append([]byte{}, refsDeltaMagicV1...), parent[:]...), 1, 1, 1, 0x1, 0x2))
	f.Add(append(append(append([]byte{}, refsDeltaMagic...), parent[:]...), 1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := decodeRefsFile(data)
		if err != nil {
			return
		}
		// What decodes re-encodes (as format 3/4) and decodes the same.
		var again []byte
		if rf.parent.IsNull() {
			again = appendKeys(append([]byte{}, refsMagic...), rf.full)
		} else {
			again = append(append([]byte{}, refsDeltaMagic...), rf.parent[:]...)
			again = binary.AppendUvarint(again, uint64(rf.depth))
			again = appendKeys(appendKeys(again, rf.added), rf.removed)
		}
		rf2, err := decodeRefsFile(again)
		if err != nil {
			t.Fatalf("re-encoded refs do not decode: %v", err)
		}
		if rf2.parent != rf.parent || rf2.depth != rf.depth || !slices.Equal(rf2.full, rf.full) ||
			!slices.Equal(rf2.added, rf.added) || !slices.Equal(rf2.removed, rf.removed) {
			t.Fatal("re-encoded refs decode differently")
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"version":1,"id":"` + (ID{1}).String() + `","pack_size":33554432,"file_chunks":{"MinSize":524288,"MaxSize":8388608,"AverageBits":20},"sql_chunks":{"MinSize":8192,"MaxSize":262144,"AverageBits":15},"restore_recipients":["x"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err == nil && (c.PackSize <= 0 || c.FileChunks.Validate() != nil) {
			t.Fatal("accepted an invalid config")
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte("# role: host\n# repository: abc\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n"))
	f.Add([]byte("# pin-restore: age1xyz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyFile(data)
		if err == nil && k.Identity == nil {
			t.Fatal("accepted a key file without identity")
		}
	})
}
