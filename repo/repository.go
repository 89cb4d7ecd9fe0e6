package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/zeebo/blake3"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/chunk"
)

// DefaultPackSize is the target size of a pack.
const DefaultPackSize = 32 << 20

// Repository is an open repository. It is safe for concurrent use.
type Repository struct {
	be    backend.Backend
	cfg   Config
	sec   secret
	codec *codec

	identities        []age.Identity
	metaRecipients    []age.Recipient // host + restore
	restoreRecipients []age.Recipient // packs
	canRead           bool
	canWrite          bool

	idx *Index

	packCache *packCache
	payloads  payloadCache              // unwrapped pack payload keys (packrange.go)
	trees     atomic.Pointer[treeCache] // set by PrefetchTrees
	bufs      streamBuffers             // StreamPack's decode buffers
	hashers   sync.Pool                 // keyed *blake3.Hasher, reset before use
	refsMu    sync.Mutex
	refsCache map[ID]*refsFile // decoded refs files (immutable, content-addressed)
	// TempDir is where packs are assembled before upload ("" = os.TempDir()).
	TempDir string
}

// InitOptions configure a new repository.
type InitOptions struct {
	// SingleKey creates one key that is both host and restore key.
	SingleKey bool
	PackSize  int64
	Now       func() time.Time
}

// Init creates a repository in be (which must be empty) and returns the
// new keys: host and restore (host is nil in single-key mode).
func Init(ctx context.Context, be backend.Backend, o InitOptions) (hostKey, restoreKey *KeyFile, err error) {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, nil, fmt.Errorf("a repository already exists at %s", be.Location())
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PackSize == 0 {
		o.PackSize = DefaultPackSize
	}
	var idb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, nil, err
	}
	repoID := hex.EncodeToString(idb[:])
	now := o.Now()

	restoreID, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, nil, err
	}
	cfg := Config{
		Version: FormatVersion, ID: repoID, Created: now.UTC().Format(time.RFC3339),
		PackSize: o.PackSize, FileChunks: chunk.FileParams, SQLChunks: chunk.SQLParams,
		RestoreRecipients: []string{restoreID.Recipient().String()},
	}
	recips := []age.Recipient{restoreID.Recipient()}
	restoreKey = &KeyFile{Role: RoleRestore, Repository: repoID, Identity: restoreID, Created: now}
	if o.SingleKey {
		restoreKey.Role = RoleSingle
	} else {
		hostID, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, nil, err
		}
		cfg.HostRecipients = []string{hostID.Recipient().String()}
		recips = append(recips, hostID.Recipient())
		hostKey = &KeyFile{Role: RoleHost, Repository: repoID, Identity: hostID, Created: now}
	}
	for _, k := range []*KeyFile{hostKey, restoreKey} {
		if k != nil {
			k.PinHost = cfg.HostRecipients
			k.PinRestore = cfg.RestoreRecipients
		}
	}

	pol, err := chunk.RandomPol()
	if err != nil {
		return nil, nil, err
	}
	sec := secret{BlobKey: make([]byte, 32), Polynomial: pol}
	if _, err := rand.Read(sec.BlobKey); err != nil {
		return nil, nil, err
	}
	c, err := newCodec()
	if err != nil {
		return nil, nil, err
	}
	secJSON, _ := json.Marshal(sec)
	sealed, err := c.seal(secJSON, recips)
	if err != nil {
		return nil, nil, err
	}
	if err := saveBytes(ctx, be, backend.Handle{Type: backend.KeyFile, Name: Hash(sealed).String()}, sealed); err != nil {
		return nil, nil, fmt.Errorf("init: %w", err)
	}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	// config last: a repository without config is not a repository.
	if err := saveBytes(ctx, be, backend.Handle{Type: backend.ConfigFile}, cfgJSON); err != nil {
		return nil, nil, fmt.Errorf("init: %w", err)
	}
	return hostKey, restoreKey, nil
}

func saveBytes(ctx context.Context, be backend.Backend, h backend.Handle, data []byte) error {
	return be.Save(ctx, h, bytes.NewReader(data), int64(len(data)))
}

// Open opens the repository in be with the given keys (at least one).
// Pins in the key files are checked against the repository's recipients.
func Open(ctx context.Context, be backend.Backend, keys ...*KeyFile) (*Repository, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key given: pass --host-key or --restore-key (or SHOPVAULT_HOST_KEY / SHOPVAULT_RESTORE_KEY)")
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	var identities []age.Identity
	for _, k := range keys {
		identities = append(identities, k.Identity)
	}
	// The key files are searched while the config loads: over a
	// high-latency link each is several round trips.
	type found struct {
		sec secret
		err error
	}
	keyc := make(chan found, 1)
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		sec, err := findSecret(kctx, be, c, identities)
		keyc <- found{sec, err}
	}()
	cfgData, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w at %s (run 'shopvault init' first)", ErrNoRepository, be.Location())
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(cfgData)
	if err != nil {
		return nil, err
	}
	r := &Repository{be: be, cfg: *cfg, codec: c, idx: NewIndex(), identities: identities}
	r.packCache = newPackCache(r, 16)

	for _, k := range keys {
		if k.Repository != "" && k.Repository != cfg.ID {
			return nil, fmt.Errorf("%w: the %s key is for repository %s…, this is %s…", ErrWrongKey, k.Role, short(k.Repository), short(cfg.ID))
		}
		if len(k.PinHost)+len(k.PinRestore) > 0 {
			if !sameSet(k.PinHost, cfg.HostRecipients) || !sameSet(k.PinRestore, cfg.RestoreRecipients) {
				return nil, fmt.Errorf("%w: the %s key pins host %v restore %v, the repository at %s names host %v restore %v; refusing to write backups to keys you did not choose (if you re-created the repository, use its new keys)",
					ErrRecipientMismatch, k.Role, k.PinHost, k.PinRestore, be.Location(), cfg.HostRecipients, cfg.RestoreRecipients)
			}
		}
		if slices.Contains(cfg.RestoreRecipients, k.Recipient()) {
			r.canRead = true
		}
	}
	pinHost, pinRestore := cfg.HostRecipients, cfg.RestoreRecipients
	for _, s := range pinRestore {
		rc, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, &CorruptError{What: "config", Err: err}
		}
		r.restoreRecipients = append(r.restoreRecipients, rc)
		r.metaRecipients = append(r.metaRecipients, rc)
	}
	for _, s := range pinHost {
		rc, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, &CorruptError{What: "config", Err: err}
		}
		r.metaRecipients = append(r.metaRecipients, rc)
	}
	k := <-keyc
	if k.err != nil {
		return nil, k.err
	}
	r.sec = k.sec
	r.canWrite = true
	return r, nil
}

// findSecret reads the repository secret from the first key file that
// one of identities opens.
func findSecret(ctx context.Context, be backend.Backend, c *codec, identities []age.Identity) (secret, error) {
	var sec secret
	var found bool
	var lastErr error
	err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		if found {
			return nil
		}
		data, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: fi.Name})
		if err != nil {
			lastErr = err
			return nil
		}
		plain, err := c.open("key "+short(fi.Name), data, identities)
		if err != nil {
			lastErr = err
			return nil
		}
		var s secret
		if err := json.Unmarshal(plain, &s); err != nil || len(s.BlobKey) != 32 || s.Polynomial.Deg() != 53 {
			lastErr = &CorruptError{What: "key " + short(fi.Name), Err: errors.New("bad secret")}
			return nil
		}
		sec, found = s, true
		return nil
	})
	if err != nil {
		return sec, fmt.Errorf("list keys: %w", err)
	}
	if !found {
		if lastErr == nil {
			return sec, &CorruptError{What: "keys", Err: errors.New("the repository has no key file")}
		}
		return sec, lastErr
	}
	return sec, nil
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Config returns the repository config.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage.
func (r *Repository) Backend() backend.Backend { return r.be }

// CanRead reports whether the repository was opened with a key that
// decrypts packs (restore or single key).
func (r *Repository) CanRead() bool { return r.canRead }

// Index returns the loaded index.
func (r *Repository) Index() *Index { return r.idx }

// Polynomial returns the chunker polynomial.
func (r *Repository) Polynomial() chunk.Pol { return r.sec.Polynomial }

// BlobID computes the keyed hash of a blob's plaintext.
func (r *Repository) BlobID(data []byte) ID {
	h, _ := r.hashers.Get().(*blake3.Hasher)
	if h == nil {
		h, _ = blake3.NewKeyed(r.sec.BlobKey)
	} else {
		h.Reset() // a reset keyed hasher keeps its key
	}
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	r.hashers.Put(h)
	return id
}

// Hasher returns a keyed hash whose Sum equals BlobID of what was written.
func (r *Repository) Hasher() *blake3.Hasher {
	h, _ := blake3.NewKeyed(r.sec.BlobKey)
	return h
}

// SaveMeta seals data for host and restore keys and stores it under its
// hash. It returns the file's id.
func (r *Repository) SaveMeta(ctx context.Context, t backend.FileType, plain []byte) (ID, error) {
	sealed, err := r.codec.seal(plain, r.metaRecipients)
	if err != nil {
		return ID{}, err
	}
	id := Hash(sealed)
	if err := saveBytes(ctx, r.be, backend.Handle{Type: t, Name: id.String()}, sealed); err != nil {
		return ID{}, err
	}
	return id, nil
}

// LoadMeta loads and opens a metadata file, checking that its content
// matches its name.
func (r *Repository) LoadMeta(ctx context.Context, t backend.FileType, name string) ([]byte, error) {
	h := backend.Handle{Type: t, Name: name}
	data, err := backend.LoadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	if Hash(data).String() != name {
		return nil, &CorruptError{What: h.String(), Err: errors.New("content does not match its name (truncated or modified)")}
	}
	return r.codec.open(h.String(), data, r.identities)
}

// LoadIndex reads every index file not loaded yet. Damaged index files
// are reported in the returned error but the others are loaded. An index
// file that vanishes while loading (a prune replaced it) is skipped and the
// listing is read again, so the files that replaced it are loaded too.
func (r *Repository) LoadIndex(ctx context.Context) error {
	for pass := 0; ; pass++ {
		vanished, err := r.loadIndexOnce(ctx)
		if err != nil || !vanished {
			return err
		}
		if pass == 4 {
			return errors.New("the index keeps changing while it is read (is a prune running without a lock?); try again")
		}
	}
}

// ReloadIndex forgets the loaded index and reads it again: call it after
// taking a lock, so blobs a prune deleted meanwhile are not taken as stored.
func (r *Repository) ReloadIndex(ctx context.Context) error {
	r.idx = NewIndex()
	return r.LoadIndex(ctx)
}

func (r *Repository) loadIndexOnce(ctx context.Context) (vanished bool, err error) {
	var names []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return false, fmt.Errorf("list index: %w", err)
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, name := range names {
		r.idx.mu.RLock()
		_, loaded := r.idx.files[name]
		r.idx.mu.RUnlock()
		if loaded {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			plain, err := r.LoadMeta(ctx, backend.IndexFile, name)
			var packs []IndexPack
			if err == nil {
				packs, err = DecodeIndex(plain)
				if err != nil {
					err = &CorruptError{What: "index/" + short(name), Err: err}
				}
			}
			if err != nil {
				mu.Lock()
				if backend.IsNotExist(err) {
					vanished = true
				} else {
					errs = append(errs, err)
				}
				mu.Unlock()
				return
			}
			r.idx.mu.Lock()
			ids := make([]ID, 0, len(packs))
			for _, p := range packs {
				r.idx.addPackLocked(p.ID, p.Size, p.Blobs)
				ids = append(ids, p.ID)
			}
			r.idx.files[name] = ids
			r.idx.mu.Unlock()
		}()
	}
	wg.Wait()
	return vanished, errors.Join(errs...)
}

// SaveIndex writes an index file for packs and records it as loaded.
func (r *Repository) SaveIndex(ctx context.Context, packs []IndexPack) (ID, error) {
	id, err := r.SaveMeta(ctx, backend.IndexFile, EncodeIndex(packs))
	if err != nil {
		return ID{}, fmt.Errorf("save index: %w", err)
	}
	ids := make([]ID, 0, len(packs))
	for _, p := range packs {
		ids = append(ids, p.ID)
	}
	r.idx.mu.Lock()
	r.idx.files[id.String()] = ids
	r.idx.mu.Unlock()
	return id, nil
}
