package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// Verification records that a drill restored a snapshot and proved it
// (file hashes, table digests). Retention's keep-min-verified keeps the
// newest verified snapshots. Stored encrypted to host and restore keys
// under verified/, so the host can read it but a drill writes it.
type Verification struct {
	Snapshot   ID        `json:"snapshot"`
	Time       time.Time `json:"time"`
	Hostname   string    `json:"hostname"`
	RTOSeconds float64   `json:"rto_seconds"`
	Files      int64     `json:"files"`
	Tables     int       `json:"tables"`
}

// SaveVerification stores v.
func (r *Repository) SaveVerification(ctx context.Context, v Verification) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := r.SaveMeta(ctx, backend.VerifiedFile, data); err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	return nil
}

// Verifications returns the newest verification of each snapshot.
// Unreadable records are skipped: they only ever keep more.
func (r *Repository) Verifications(ctx context.Context) (map[ID]Verification, error) {
	out := map[ID]Verification{}
	var names []string
	if err := r.be.List(ctx, backend.VerifiedFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list verifications: %w", err)
	}
	for _, name := range names {
		plain, err := r.LoadMeta(ctx, backend.VerifiedFile, name)
		if err != nil {
			continue
		}
		var v Verification
		if json.Unmarshal(plain, &v) != nil {
			continue
		}
		if old, ok := out[v.Snapshot]; !ok || v.Time.After(old.Time) {
			out[v.Snapshot] = v
		}
	}
	return out, nil
}
