package repo

import (
	"errors"
	"fmt"
	"time"
)

// ErrWrongKey is returned when none of the given identities can decrypt
// the repository's key file or a pack.
var ErrWrongKey = errors.New("wrong key: none of the given keys opens this repository")

// ErrNoRepository is returned when the location holds no repository.
var ErrNoRepository = errors.New("no repository")

// ErrNeedRestoreKey is returned when an operation needs to decrypt packs
// but the repository was opened with the host key only.
var ErrNeedRestoreKey = errors.New("this needs the restore key: the host key can write backups but cannot read them (pass --restore-key or SHOPVAULT_RESTORE_KEY)")

// ErrRecipientMismatch is returned when the repository's recipients differ
// from the ones the client pinned.
var ErrRecipientMismatch = errors.New("repository recipients differ from the pinned ones")

// CorruptError reports damaged stored data.
type CorruptError struct {
	What string // e.g. "pack data/ab12…", "index 3f…"
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s is damaged: %v (run 'shopvault check --read-data' to see all damage)", e.What, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// LockedError is returned when a conflicting lock is held.
type LockedError struct {
	Holder Lock
	Name   string
}

func (e *LockedError) Error() string {
	kind := "shared"
	if e.Holder.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("repository is locked (%s lock %s by %s pid %d on %s since %s); if that process is gone, run 'shopvault unlock'",
		kind, short(e.Name), e.Holder.Username, e.Holder.PID, e.Holder.Hostname, e.Holder.Time.Format(time.RFC3339))
}
