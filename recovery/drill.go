package recovery

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// DrillDomain is the staging domain of a drill's rewrite when none is given
// (.invalid never resolves, RFC 2606).
const DrillDomain = "drill.invalid"

// DrillOptions configure Drill.
type DrillOptions struct {
	// Scratch is the directory in which the drill makes its own temporary
	// directory ("" is os.TempDir()).
	Scratch string
	// DB is the server the databases are loaded into, under throwaway
	// names (DBName is ignored). Required when the snapshot holds a dump.
	DB *mysql.Config
	// DBName is the throwaway database name; "" is shopvault_drill_<random>.
	// With several databases, the others get _2, _3, ... appended.
	DBName string
	// Rewrite is the rehearsed staging rewrite (Domain defaults to
	// DrillDomain); it runs when the files are a PrestaShop shop.
	Rewrite prestashop.Target
	// Source is the shop's directory in the snapshot ("" finds it).
	Source string
	// Keep leaves the scratch directory and databases for inspection.
	Keep     bool
	Owner    bool
	Workers  int
	Threads  int
	Hostname string // recorded in the verification
	// NoRecord skips repo.SaveVerification (for a read-only repository).
	NoRecord     bool
	Progress     restore.Progress
	LoadProgress dump.Progress
	Now          func() time.Time
}

// Drill rehearses a disaster recovery: it restores every file of sn into a
// scratch directory and verifies each against the snapshot, loads every
// database into a throwaway database with row counts and digests proven,
// rehearses the staging rewrite on the shop and reads it back, and reports
// RTO (wall time of all that) and RPO (the snapshot's age). Damaged
// repository data does not stop it: the files it hit are named and the
// drill fails. The scratch is removed unless o.Keep. On success the
// verification is recorded in the repository (retention's
// keep-min-verified counts it).
func Drill(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o DrillOptions) (*Report, error) {
	now := clock(o.Now)
	rep := newReport(KindDrill, sn, now)
	if sn.DB != nil && o.DB == nil {
		return nil, fmt.Errorf("snapshot %s holds databases; give a server for the throwaway databases (--db-into): %w", sn.ID.Short(), ErrNoDatabase)
	}
	var m *dump.Manifest
	if sn.DB != nil {
		var err error
		if m, err = LoadManifest(ctx, r, sn); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(o.Scratch, "shopvault-drill-")
	if err != nil {
		return nil, fmt.Errorf("drill scratch directory: %w", err)
	}
	rep.Root = dir
	sc := &ScratchReport{Dir: dir, Kept: o.Keep}
	rep.Scratch = sc
	var dbNames []string
	defer func() {
		if o.Keep {
			return
		}
		var errs []error
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
		if len(dbNames) > 0 {
			if db, err := openDB(withDB(o.DB, "")); err == nil {
				for _, n := range dbNames {
					if _, err := db.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS `"+n+"`"); err != nil {
						errs = append(errs, fmt.Errorf("drop %s: %w", n, err))
					}
				}
				db.Close()
			} else {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			sc.Error = err.Error()
		}
	}()

	// Files: everything but the dump, verified before anything touches them.
	// (Verify: the restore re-reads and proves every file itself.)
	ro := restore.Options{Target: dir, Exclude: []string{"/db"}, IgnoreErrors: true, Owner: o.Owner, Workers: o.Workers, Progress: o.Progress, Now: now, Verify: true}
	if paths := snapshotFilePaths(sn); len(paths) > 0 {
		ro.Include = paths
		fr, err := restoreFiles(ctx, r, sn, ro)
		rep.Files = fr
		if err != nil {
			return rep, err
		}
		filesChecks(rep, fr)
	}

	// Databases, under throwaway names.
	base := o.DBName
	if base == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return rep, err
		}
		base = "shopvault_drill_" + hex.EncodeToString(b[:])
	}
	var shopDB *DatabaseReport
	var loadErr error
	if m != nil {
		for i, d := range m.Databases {
			name := base
			if i > 0 {
				name = fmt.Sprintf("%s_%d", base, i+1)
			}
			dbNames = append(dbNames, name)
			if i == 0 {
				sc.Database = name
			}
			dr, err := loadDatabase(ctx, rep, r, sn, m, d.Name, withDB(o.DB, name), dump.LoadOptions{Threads: o.Threads, Progress: o.LoadProgress, Now: now})
			if err != nil {
				loadErr = errors.Join(loadErr, err)
				if ctx.Err() != nil {
					return rep, err
				}
				continue
			}
			if shopDB == nil {
				shopDB = dr
			}
		}
	}

	// The staging rewrite, rehearsed on the scratch copy.
	if rep.Files != nil && len(rep.Files.Damaged) == 0 {
		drillRewrite(ctx, rep, r, sn, o, dir, m, dbNames)
	}
	rep.RTOSeconds = now().Sub(rep.Started).Seconds()
	if loadErr != nil && len(rep.Failed()) == 0 {
		rep.check(false, "databases loaded", loadErr.Error())
	}

	if rep.OK() && !o.NoRecord {
		v := repo.Verification{Snapshot: sn.ID, Time: now(), Hostname: o.Hostname, RTOSeconds: rep.RTOSeconds}
		if rep.Files != nil {
			v.Files = rep.Files.Verified
		}
		for _, d := range rep.Databases {
			v.Tables += d.Tables
		}
		err := r.SaveVerification(ctx, v)
		detail := ""
		if err != nil {
			detail = err.Error()
		}
		rep.check(err == nil, "verification recorded in the repository (keep-min-verified)", detail)
	}
	return rep, rep.result()
}

// drillRewrite finds the shop in the scratch copy and rehearses the staging
// rewrite against the throwaway database of the shop.
func drillRewrite(ctx context.Context, rep *Report, r *repo.Repository, sn *repo.Snapshot, o DrillOptions, dir string, m *dump.Manifest, dbNames []string) {
	sr := &ShopReport{}
	rep.PrestaShop = sr
	source := o.Source
	if source == "" {
		var err error
		source, err = FindShop(ctx, r, sn)
		if err != nil {
			sr.Skipped = "staging rewrite not rehearsed: " + err.Error()
			rep.Warnings = append(rep.Warnings, sr.Skipped)
			return
		}
	}
	rep.Source = source
	shop, err := prestashop.Detect(filepath.Join(dir, filepath.FromSlash(path.Clean("/"+source))))
	if errors.Is(err, prestashop.ErrNotPrestaShop) {
		sr.Skipped = "not recognised as PrestaShop, staging rewrite not rehearsed: " + err.Error()
		rep.Warnings = append(rep.Warnings, sr.Skipped)
		return
	}
	if err != nil {
		rep.check(false, "PrestaShop configuration readable", err.Error())
		return
	}
	sr.Detected, sr.Series, sr.Version, sr.Prefix = true, shop.Series, shop.Version, shop.DB.Prefix
	t := o.Rewrite
	if t.Domain == "" {
		t.Domain = DrillDomain
	}
	var db *sql.DB
	if m != nil {
		from, err := shopDatabase(m, shop)
		if err != nil {
			rep.check(false, "the shop's database is in the snapshot", err.Error())
			return
		}
		sr.Database = from
		for i, d := range m.Databases {
			if d.Name == from && i < len(dbNames) {
				cfg := withDB(o.DB, dbNames[i])
				t = shopTarget(t, cfg)
				if db, err = openDB(cfg); err != nil {
					rep.check(false, "connect to the drill database", err.Error())
					return
				}
				defer db.Close()
			}
		}
	}
	if t.DBName == "" {
		t.DBName, t.DBHost, t.DBUser = "shopvault_drill", "localhost", "shopvault_drill"
	}
	_, checks, err := rewrite(ctx, db, shop, &t, sr, rep)
	if err != nil {
		rep.check(false, "staging rewrite rehearsed", err.Error())
		return
	}
	rewriteChecks(rep, checks)
}
