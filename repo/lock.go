package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sync"
	"syscall"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// Lock is the content of a lock file (plaintext JSON).
type Lock struct {
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	Username  string    `json:"username"`
	PID       int       `json:"pid"`
}

// LockLease is how long a lock stays valid without a refresh.
const LockLease = 30 * time.Minute

// lockRefresh is how often a held lock is refreshed.
const lockRefresh = 5 * time.Minute

// LockOptions configure Repository.Lock.
type LockOptions struct {
	Exclusive bool
	Now       func() time.Time
	// Logf receives messages about stale locks taken over; nil discards.
	Logf func(format string, args ...any)
	// processAlive reports whether pid runs on this host; nil uses kill(pid, 0).
	ProcessAlive func(pid int) bool
}

// LockHandle is a held lock; Unlock releases it.
type LockHandle struct {
	r      *Repository
	mu     sync.Mutex
	name   string
	lock   Lock
	stop   chan struct{}
	done   chan struct{}
	now    func() time.Time
	failed error
}

// IsStale reports whether l is stale: its lease expired, or it was taken on
// this host by a process that no longer runs.
func (l Lock) IsStale(now time.Time, hostname string, alive func(int) bool) bool {
	if now.Sub(l.Time) > LockLease {
		return true
	}
	return l.Hostname == hostname && !alive(l.PID)
}

func defaultAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Locks lists the repository's locks by name. Unreadable locks are skipped.
func (r *Repository) Locks(ctx context.Context) (map[string]Lock, error) {
	out := map[string]Lock{}
	err := r.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		data, err := backend.LoadAll(ctx, r.be, backend.Handle{Type: backend.LockFile, Name: fi.Name})
		if err != nil {
			return nil // removed meanwhile
		}
		var l Lock
		if json.Unmarshal(data, &l) != nil {
			l = Lock{Time: fi.ModTime, Hostname: "?", Username: "?"}
		}
		out[fi.Name] = l
		return nil
	})
	return out, err
}

// RemoveLocks removes locks: stale ones only, or all.
func (r *Repository) RemoveLocks(ctx context.Context, all bool, now time.Time) ([]string, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var removed []string
	for name, l := range locks {
		if all || l.IsStale(now, host, defaultAlive) {
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: name}); err != nil && !backend.IsNotExist(err) {
				return removed, err
			}
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// Lock takes a shared or exclusive lock, taking over stale locks, and
// refreshes it until Unlock.
func (r *Repository) Lock(ctx context.Context, o LockOptions) (*LockHandle, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.ProcessAlive == nil {
		o.ProcessAlive = defaultAlive
	}
	host, _ := os.Hostname()
	username := "?"
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	me := Lock{Time: o.Now(), Exclusive: o.Exclusive, Hostname: host, Username: username, PID: os.Getpid()}

	conflict := func(skip string) error {
		locks, err := r.Locks(ctx)
		if err != nil {
			return fmt.Errorf("list locks: %w", err)
		}
		for name, l := range locks {
			if name == skip {
				continue
			}
			if l.IsStale(o.Now(), host, o.ProcessAlive) {
				o.Logf("removing stale lock %s of %s pid %d on %s from %s", short(name), l.Username, l.PID, l.Hostname, l.Time.Format(time.RFC3339))
				if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: name}); err != nil && !backend.IsNotExist(err) {
					return fmt.Errorf("remove stale lock: %w", err)
				}
				continue
			}
			if o.Exclusive || l.Exclusive {
				return &LockedError{Holder: l, Name: name}
			}
		}
		return nil
	}
	if err := conflict(""); err != nil {
		return nil, err
	}
	lh := &LockHandle{r: r, lock: me, now: o.Now, stop: make(chan struct{}), done: make(chan struct{})}
	if err := lh.write(ctx); err != nil {
		return nil, err
	}
	// Someone may have locked at the same time: check again.
	if err := conflict(lh.name); err != nil {
		_ = r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: lh.name})
		return nil, err
	}
	go lh.refresher()
	return lh, nil
}

func (lh *LockHandle) write(ctx context.Context) error {
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	name := hex.EncodeToString(rnd[:])
	data, _ := json.Marshal(lh.lock)
	if err := saveBytes(ctx, lh.r.be, backend.Handle{Type: backend.LockFile, Name: name}, data); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	lh.name = name
	return nil
}

func (lh *LockHandle) refresher() {
	defer close(lh.done)
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-lh.stop:
			return
		case <-t.C:
			lh.mu.Lock()
			old := lh.name
			lh.lock.Time = lh.now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := lh.write(ctx); err != nil {
				lh.failed = err
			} else {
				_ = lh.r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: old})
			}
			cancel()
			lh.mu.Unlock()
		}
	}
}

// Unlock stops refreshing and removes the lock file.
func (lh *LockHandle) Unlock(ctx context.Context) error {
	close(lh.stop)
	<-lh.done
	lh.mu.Lock()
	defer lh.mu.Unlock()
	if err := lh.r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: lh.name}); err != nil && !backend.IsNotExist(err) {
		return err
	}
	return nil
}
