package recovery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// FullOptions configure RestoreFull.
type FullOptions struct {
	// Root is prefixed to every original path: "" or "/" restores in place,
	// "/mnt/new" rebuilds a fresh machine's disk.
	Root string
	// DB is the server every database of the snapshot is loaded into, under
	// its original name, with its users and grants (DBName is ignored).
	// Required when the snapshot holds a dump.
	DB *mysql.Config
	// Overwrite restores over existing files and databases; without it a
	// non-empty original path or a database with tables is refused.
	Overwrite    bool
	IgnoreErrors bool
	Owner        bool
	Workers      int
	Threads      int
	Progress     restore.Progress
	LoadProgress dump.Progress
	Now          func() time.Time
}

// ErrNotEmpty is wrapped when a full restore would overwrite something.
var ErrNotEmpty = errors.New("restore target is not empty")

// RestoreFull restores sn to its original paths (under o.Root) and every
// database into o.DB with users and grants, then verifies files and tables.
// Nothing is written until every path and database is known to be empty
// (or o.Overwrite).
func RestoreFull(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o FullOptions) (*Report, error) {
	now := clock(o.Now)
	rep := newReport(KindFull, sn, now)
	root := o.Root
	if root == "" {
		root = "/"
	}
	rep.Root = root
	if sn.DB != nil && o.DB == nil {
		return nil, fmt.Errorf("snapshot %s holds databases (%s): give the server to load them into (--db-into): %w", sn.ID.Short(), strings.Join(sn.DB.Databases, ", "), ErrNoDatabase)
	}
	paths := snapshotFilePaths(sn)
	if !o.Overwrite {
		for _, p := range paths {
			if err := checkEmptyPath(filepath.Join(root, p)); err != nil {
				return nil, err
			}
		}
	}
	var m *dump.Manifest
	if sn.DB != nil {
		var err error
		if m, err = LoadManifest(ctx, r, sn); err != nil {
			return nil, err
		}
		if !o.Overwrite {
			for _, d := range m.Databases {
				if err := checkEmptyDB(ctx, withDB(o.DB, d.Name)); err != nil {
					return nil, fmt.Errorf("%w (or --overwrite)", err)
				}
			}
		}
	}
	// Verify: the restore proves every file it wrote (re-read, re-hashed);
	// the database load that follows does not touch them.
	ro := restore.Options{Target: root, Include: paths, Overwrite: true, IgnoreErrors: o.IgnoreErrors,
		Owner: o.Owner, Workers: o.Workers, Progress: o.Progress, Now: now, Verify: true}
	if len(paths) > 0 {
		fr, err := restoreFiles(ctx, r, sn, ro)
		rep.Files = fr
		if err != nil {
			return rep, err
		}
	}
	if m != nil {
		for _, d := range m.Databases {
			_, err := loadDatabase(ctx, rep, r, sn, m, d.Name, withDB(o.DB, d.Name),
				dump.LoadOptions{Threads: o.Threads, DropExisting: o.Overwrite, Grants: true, Progress: o.LoadProgress, Now: now})
			if err != nil {
				return rep, err
			}
			if len(d.Users) > 0 {
				rep.check(true, fmt.Sprintf("database %s: users and grants recreated", d.Name), strings.Join(d.Users, ", "))
			} else if d.GrantsSkipped != "" {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("database %s: the dump holds no users or grants (%s); create them by hand", d.Name, d.GrantsSkipped))
			}
		}
	}
	if rep.Files != nil {
		filesChecks(rep, rep.Files)
	}
	rep.RTOSeconds = now().Sub(rep.Started).Seconds()
	return rep, rep.result()
}

// checkEmptyPath refuses an existing file or non-empty directory.
func checkEmptyPath(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore target %s: %w", p, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s exists; pass --overwrite to restore over it", ErrNotEmpty, p)
	}
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("restore target %s: %w", p, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("%w: %s already holds files; pass --overwrite to restore over it (files that match the snapshot are kept), or --root DIR to restore elsewhere", ErrNotEmpty, p)
	}
	return nil
}

// VerifyOptions configure VerifyTarget.
type VerifyOptions struct {
	// Kind is KindStaging, KindFull or KindDir.
	Kind string
	// Root: KindFull the --root of the restore ("" is /), KindDir the
	// directory; KindStaging takes it from Record.
	Root string
	// Record is what RestoreStaging wrote (KindStaging).
	Record *Record
	// DB is the server (KindFull) or the server and staging database
	// (KindStaging; its password is the one the rewrite wrote).
	DB         *mysql.Config
	Owner      bool
	Workers    int
	ProbeURL   string
	HTTPClient *http.Client
	Now        func() time.Time
}

// VerifyTarget re-checks an existing restore of sn: every file's content
// hash and metadata (staging: except those the rewrite changed on purpose),
// every table's row count and digest (staging: except the tables the
// rewrite changed, which are checked by reading the rewrite back), and for
// staging the whole rewrite checklist. Files and tables are read as they
// are now, so an interrupted or tampered restore fails.
func VerifyTarget(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o VerifyOptions) (*Report, error) {
	now := clock(o.Now)
	rep := newReport(o.Kind, sn, now)
	rep.Verify = true
	var m *dump.Manifest
	if sn.DB != nil && o.DB != nil && o.Kind != KindDir {
		var err error
		if m, err = LoadManifest(ctx, r, sn); err != nil {
			return nil, err
		}
	}
	switch o.Kind {
	case KindDir:
		if o.Root == "" {
			return nil, errors.New("verify: no directory given")
		}
		rep.Root = o.Root
		rep.Files = &FilesReport{Damaged: []string{}}
		if err := verifyFiles(ctx, r, sn, restore.Options{Target: o.Root, Owner: o.Owner, Workers: o.Workers}, nil, rep.Files, now); err != nil {
			return rep, err
		}
		filesChecks(rep, rep.Files)
	case KindFull:
		root := o.Root
		if root == "" {
			root = "/"
		}
		rep.Root = root
		if paths := snapshotFilePaths(sn); len(paths) > 0 {
			rep.Files = &FilesReport{Damaged: []string{}}
			ro := restore.Options{Target: root, Include: paths, Owner: o.Owner, Workers: o.Workers}
			if err := verifyFiles(ctx, r, sn, ro, nil, rep.Files, now); err != nil {
				return rep, err
			}
			filesChecks(rep, rep.Files)
		}
		if m != nil {
			db, err := openDB(withDB(o.DB, ""))
			if err != nil {
				return rep, err
			}
			defer db.Close()
			for _, d := range m.Databases {
				verifyTables(ctx, rep, db, m, d.Name, d.Name, nil)
			}
		} else if sn.DB != nil {
			rep.check(false, "databases checked", "the snapshot holds databases; give the server (--db-into) to check them")
		}
	case KindStaging:
		rec := o.Record
		if rec == nil {
			return nil, errors.New("verify staging: no record of the staging restore")
		}
		if rec.Snapshot != sn.ID.String() {
			return nil, fmt.Errorf("the staging target %s holds snapshot %s (restored %s), not %s", rec.Root, rec.Snapshot[:8], rec.Time.Format(time.RFC3339), sn.ID.Short())
		}
		rep.Root, rep.Source = rec.Root, rec.Source
		if !rec.Complete {
			rep.check(false, "the staging restore of "+rec.Time.Format(time.RFC3339)+" did not complete", "run the restore again with --overwrite (and --drop-existing) to finish it")
		}
		rep.Files = &FilesReport{Damaged: []string{}}
		ro := restore.Options{Target: rec.Root, Rebase: rec.Source, Owner: o.Owner, Workers: o.Workers}
		if err := verifyFiles(ctx, r, sn, ro, rec.Excluded, rep.Files, now); err != nil {
			return rep, err
		}
		filesChecks(rep, rep.Files)
		var db *sql.DB
		if rec.Database != "" {
			if o.DB == nil || m == nil {
				return rep, fmt.Errorf("verify staging: the restore loaded database %s; give its server", rec.Database)
			}
			var err error
			if db, err = openDB(withDB(o.DB, rec.Database)); err != nil {
				return rep, err
			}
			defer db.Close()
			expected := map[string]bool{}
			for _, t := range rec.Rewritten {
				expected[t] = true
			}
			verifyTables(ctx, rep, db, m, rec.From, rec.Database, expected)
		}
		if rec.Shop != nil {
			shop := *rec.Shop
			shop.Root = rec.Root
			t := rec.Target
			if o.DB != nil {
				t.DBPassword = o.DB.Passwd
			}
			checks, err := prestashop.Verify(ctx, db, &shop, t)
			if err != nil {
				return rep, err
			}
			rep.PrestaShop = &ShopReport{Detected: true, Series: shop.Series, Version: shop.Version, Database: rec.From, Prefix: shop.DB.Prefix, Checks: checks}
			rewriteChecks(rep, checks)
		}
		if o.ProbeURL != "" {
			probe(ctx, rep, db, rec.Shop, o.ProbeURL, o.HTTPClient)
		}
	default:
		return nil, fmt.Errorf("verify: unknown target kind %q", o.Kind)
	}
	rep.RTOSeconds = now().Sub(rep.Started).Seconds()
	return rep, rep.result()
}

func verifyTables(ctx context.Context, rep *Report, db *sql.DB, m *dump.Manifest, from, into string, expected map[string]bool) {
	checks, err := dump.VerifyDatabase(ctx, db, m, from, into)
	var ve *dump.VerifyError
	if err != nil && !errors.As(err, &ve) {
		rep.check(false, fmt.Sprintf("database %s -> %s checked", from, into), err.Error())
		return
	}
	dr := DatabaseReport{From: from, Into: into, Tables: len(checks), Checks: checks}
	for _, c := range checks {
		dr.Rows += c.GotRows
		if expected[c.Table] {
			dr.Rewritten = append(dr.Rewritten, c.Table)
		}
	}
	rep.Databases = append(rep.Databases, dr)
	tableChecks(rep, from, into, checks, expected)
}
