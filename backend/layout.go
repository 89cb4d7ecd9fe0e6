package backend

import "path"

// Path returns the slash-separated path of h relative to the repository
// root. Packs are sharded by the first two characters of their name:
// data/ab/abcdef...; every other type is a flat directory. All backends
// use this layout so a repository can be copied between them.
func Path(h Handle) string {
	if h.Type == ConfigFile {
		return "config"
	}
	if h.Type == PackFile && len(h.Name) >= 2 {
		return path.Join(string(h.Type), h.Name[:2], h.Name)
	}
	return path.Join(string(h.Type), h.Name)
}

// Dirs returns every directory a repository needs, relative to its root,
// including the 256 pack shards.
func Dirs() []string {
	dirs := []string{string(KeyFile), string(IndexFile), string(SnapshotFile), string(RefsFile), string(LockFile), string(VerifiedFile), string(PackFile)}
	const hex = "0123456789abcdef"
	for i := 0; i < 256; i++ {
		dirs = append(dirs, path.Join(string(PackFile), string([]byte{hex[i>>4], hex[i&15]})))
	}
	return dirs
}
