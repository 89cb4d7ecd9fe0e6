package recovery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// StagingOptions configure RestoreStaging.
type StagingOptions struct {
	// Root is the target's web root; it must be empty unless Overwrite.
	Root string
	// Source is the snapshot directory of the shop; "" finds it (FindShop,
	// else the snapshot's only path).
	Source string
	// DB is the target's server with DBName the target's own database.
	// Required when the snapshot holds a dump.
	DB *mysql.Config
	// Rewrite is the staging rewrite; its database fields default to DB's.
	Rewrite prestashop.Target
	// DropExisting replaces a staging database that has tables.
	DropExisting bool
	// Overwrite restores into a non-empty root (resume).
	Overwrite bool
	// IgnoreErrors continues past damaged repository data; the damaged
	// files are listed and fail the checklist.
	IgnoreErrors bool
	Owner        bool // restore file owners (root only)
	Workers      int  // packs read in parallel (default 4)
	Threads      int  // tables loaded in parallel (0: dump.DefaultLoadThreads)
	// ProbeURL, when set, is fetched at the end: it must answer 200 with
	// the shop's name (PS_SHOP_NAME) in the page.
	ProbeURL   string
	HTTPClient *http.Client // nil: a client with a 30 s timeout
	// RecordPath is where the restore writes its Record (what VerifyTarget
	// needs later); "" writes none. Keep it outside the web root.
	RecordPath   string
	Progress     restore.Progress
	LoadProgress dump.Progress
	Now          func() time.Time
}

// RecordFormat is the version of the Record layout.
const RecordFormat = 1

// Record is what a staging restore leaves behind (outside the web root) so
// that VerifyTarget can re-check it honestly later: the shop as the
// snapshot had it (before the rewrite), the rewrite, and what the rewrite
// changed on purpose. The database password is not stored.
type Record struct {
	Format int `json:"format"`
	// Complete is false while the restore runs and stays false when it
	// stopped (disk full, killed): verify then reports it.
	Complete  bool              `json:"complete"`
	Snapshot  string            `json:"snapshot"`
	Time      time.Time         `json:"time"`
	Root      string            `json:"root"`
	Source    string            `json:"source"`
	From      string            `json:"from,omitempty"`     // database in the snapshot
	Database  string            `json:"database,omitempty"` // the staging database
	Rewritten []string          `json:"rewritten_tables,omitempty"`
	Excluded  []string          `json:"excluded_paths,omitempty"`
	Shop      *prestashop.Shop  `json:"shop,omitempty"`
	Target    prestashop.Target `json:"target"`
}

// ReadRecord reads a Record written by RestoreStaging.
func ReadRecord(p string) (*Record, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("staging restore record: %w (was the target restored with this configuration?)", err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("staging restore record %s: %w", p, err)
	}
	if rec.Format != RecordFormat {
		return nil, fmt.Errorf("staging restore record %s: format %d, this version reads %d", p, rec.Format, RecordFormat)
	}
	return &rec, nil
}

func writeRecord(p string, rec *Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("staging restore record: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("staging restore record: %w", err)
	}
	return os.Rename(tmp, p)
}

// RestoreStaging builds a staging clone from sn: the shop's web root into
// o.Root, its database into o.DB (row counts and digests proven by the
// load), the PrestaShop rewrite (skipped with a reason when the files are
// not a PrestaShop shop), then verification of the files (apart from the
// ones the rewrite changed), the rewrite read back, and the optional probe.
func RestoreStaging(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o StagingOptions) (*Report, error) {
	now := clock(o.Now)
	rep := newReport(KindStaging, sn, now)
	rep.Root = o.Root
	if o.Root == "" {
		return nil, errors.New("staging restore: no target root")
	}
	if sn.DB != nil && o.DB == nil {
		return nil, fmt.Errorf("snapshot %s holds databases (%s) but the target has no database server: %w", sn.ID.Short(), strings.Join(sn.DB.Databases, ", "), ErrNoDatabase)
	}
	if sn.DB != nil && o.DB.DBName == "" {
		return nil, errors.New("staging restore: the target names no database of its own")
	}
	source, err := shopSource(ctx, r, sn, o.Source)
	if err != nil {
		return nil, err
	}
	rep.Source = source
	if sn.DB != nil && !o.DropExisting {
		// Refuse before writing any file.
		if err := checkEmptyDB(ctx, o.DB); err != nil {
			return nil, err
		}
	}

	if o.RecordPath != "" {
		// A record of the attempt first, so verify can report an
		// interrupted restore honestly.
		if err := writeRecord(o.RecordPath, &Record{Format: RecordFormat, Snapshot: sn.ID.String(), Time: rep.Started, Root: o.Root, Source: source}); err != nil {
			return rep, err
		}
	}
	ro := restore.Options{Target: o.Root, Rebase: source, Overwrite: o.Overwrite, IgnoreErrors: o.IgnoreErrors,
		Owner: o.Owner, Workers: o.Workers, Progress: o.Progress, Now: now}

	// With one database in the snapshot there is nothing for the shop's
	// configuration to choose: it loads while the files restore (the load
	// is mostly the database server's work, the restore ours).
	var early *earlyLoad
	if sn.DB != nil && len(sn.DB.Databases) == 1 {
		early = startEarlyLoad(ctx, r, sn, o, now)
	}
	fr, err := restoreFiles(ctx, r, sn, ro)
	rep.Files = fr
	if err != nil {
		if early != nil {
			early.cancel()
			early.wait()
		}
		return rep, err
	}
	if err := rootMeta(ctx, r, sn, source, o.Root, o.Owner); err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}

	shop, detectErr := prestashop.Detect(o.Root)
	sr := &ShopReport{}
	rep.PrestaShop = sr
	var before *prestashop.Shop
	switch {
	case detectErr == nil:
		sr.Detected, sr.Series, sr.Version, sr.Database, sr.Prefix = true, shop.Series, shop.Version, shop.DB.Name, shop.DB.Prefix
		cp := *shop
		before = &cp
	case errors.Is(detectErr, prestashop.ErrNotPrestaShop):
		sr.Skipped = "not recognised as PrestaShop: files and database restored as they are, no staging rewrite (" + detectErr.Error() + ")"
		rep.Warnings = append(rep.Warnings, sr.Skipped)
		shop = nil
	default:
		sr.Skipped = "the shop's configuration cannot be read, so the staging rewrite cannot run: " + detectErr.Error()
		rep.check(false, "PrestaShop configuration readable", detectErr.Error())
		shop = nil
	}

	var db *sql.DB
	var dbCfg *mysql.Config
	var dr *DatabaseReport
	var m *dump.Manifest
	if early != nil {
		var lrep *Report
		m, dr, lrep, err = early.wait()
		// its findings, in the order a sequential load would have given them
		rep.Databases = append(rep.Databases, lrep.Databases...)
		rep.Checklist = append(rep.Checklist, lrep.Checklist...)
		rep.Warnings = append(rep.Warnings, lrep.Warnings...)
		if err != nil {
			return rep, err
		}
		dbCfg = o.DB
		if db, err = openDB(dbCfg); err != nil {
			return rep, err
		}
		defer db.Close()
	} else if sn.DB != nil {
		m, err = LoadManifest(ctx, r, sn)
		if err != nil {
			return rep, err
		}
		from, err := shopDatabase(m, shop)
		if err != nil {
			return rep, err
		}
		dbCfg = o.DB
		dr, err = loadDatabase(ctx, rep, r, sn, m, from, dbCfg, dump.LoadOptions{Threads: o.Threads, DropExisting: o.DropExisting, Progress: o.LoadProgress, Now: now})
		if err != nil {
			return rep, err
		}
		if db, err = openDB(dbCfg); err != nil {
			return rep, err
		}
		defer db.Close()
	} else if o.DB != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("snapshot %s holds no database dump; only files were restored", sn.ID.Short()))
	}

	var t prestashop.Target
	var excluded []string
	if shop != nil {
		t = o.Rewrite
		if dbCfg != nil {
			t = shopTarget(t, dbCfg)
		}
		excl, checks, err := rewrite(ctx, db, shop, &t, sr, rep)
		if err != nil {
			return rep, err
		}
		for _, e := range excl {
			excluded = append(excluded, path.Join(source, e))
		}
		resetDirTimes(ctx, r, sn, source, o.Root, excl)
		rewriteChecks(rep, checks)
		if dr != nil {
			// Which tables did the rewrite change? Their digests were
			// proven by the load, before it.
			after, err := dump.VerifyDatabase(ctx, db, m, dr.From, dbCfg.DBName)
			var ve *dump.VerifyError
			if err != nil && !errors.As(err, &ve) {
				return rep, fmt.Errorf("tables after the rewrite: %w", err)
			}
			for _, c := range after {
				if !c.OK() {
					dr.Rewritten = append(dr.Rewritten, c.Table)
				}
			}
		}
	}

	if err := verifyFiles(ctx, r, sn, ro, excluded, rep.Files, now); err != nil {
		return rep, err
	}
	filesChecks(rep, rep.Files)
	if o.ProbeURL != "" {
		probe(ctx, rep, db, shop, o.ProbeURL, o.HTTPClient)
	}
	rep.RTOSeconds = now().Sub(rep.Started).Seconds()

	if o.RecordPath != "" {
		rec := &Record{Format: RecordFormat, Complete: true, Snapshot: sn.ID.String(), Time: rep.Started, Root: o.Root, Source: source,
			Excluded: excluded, Shop: before, Target: t}
		rec.Target.DBPassword = ""
		if dr != nil {
			rec.From, rec.Database, rec.Rewritten = dr.From, dr.Into, dr.Rewritten
		}
		if err := writeRecord(o.RecordPath, rec); err != nil {
			rep.Warnings = append(rep.Warnings, err.Error()+" (verify --to staging will not be able to re-check this restore)")
		}
	}
	return rep, rep.result()
}

// rootMeta gives the target root the mode, owner and mtime of the
// snapshot directory restored there (the engine leaves the target's own
// metadata alone), so the web server can read the clone as it read the shop.
func rootMeta(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, source, root string, owner bool) error {
	n, _, err := r.FindNode(ctx, sn.Tree, source)
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", source, err)
	}
	if owner {
		if err := os.Lchown(root, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("owner of %s: %w", root, err)
		}
	}
	if err := os.Chmod(root, n.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("mode of %s: %w", root, err)
	}
	if err := os.Chtimes(root, n.ModTime, n.ModTime); err != nil {
		return fmt.Errorf("mtime of %s: %w", root, err)
	}
	return nil
}

// resetDirTimes gives the directories holding files the rewrite replaced
// (atomically, by rename) their snapshot mtimes back, so that only the
// rewritten files themselves differ from the snapshot.
func resetDirTimes(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, source, root string, rel []string) {
	done := map[string]bool{}
	for _, e := range rel {
		for d := path.Dir(e); d != "." && d != "/" && !done[d]; d = path.Dir(d) {
			done[d] = true
			n, _, err := r.FindNode(ctx, sn.Tree, path.Join(source, d))
			if err != nil || n.Type != repo.NodeDir {
				continue
			}
			_ = os.Chtimes(filepath.Join(root, filepath.FromSlash(d)), n.ModTime, n.ModTime)
		}
	}
}

// checkEmptyDB refuses a target database that already has tables.
func checkEmptyDB(ctx context.Context, cfg *mysql.Config) error {
	db, err := openDB(withDB(cfg, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?", cfg.DBName).Scan(&n)
	if err != nil {
		return fmt.Errorf("connect to the target database server %s: %w", cfg.Addr, err)
	}
	if n > 0 {
		return fmt.Errorf("%w: database %s already has %d tables; pass --drop-existing to replace them, or choose another database", dump.ErrNotEmpty, cfg.DBName, n)
	}
	return nil
}

// earlyLoad is a database load running beside the file restore.
type earlyLoad struct {
	cancel context.CancelFunc
	done   chan struct{}
	m      *dump.Manifest
	dr     *DatabaseReport
	rep    *Report // the load's own checks and warnings, merged by the caller
	err    error
}

// startEarlyLoad loads the snapshot's only database into o.DB.
func startEarlyLoad(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, o StagingOptions, now func() time.Time) *earlyLoad {
	ctx, cancel := context.WithCancel(ctx)
	e := &earlyLoad{cancel: cancel, done: make(chan struct{}), rep: &Report{}}
	go func() {
		defer close(e.done)
		if e.m, e.err = LoadManifest(ctx, r, sn); e.err != nil {
			return
		}
		from, err := shopDatabase(e.m, nil)
		if err != nil {
			e.err = err
			return
		}
		e.dr, e.err = loadDatabase(ctx, e.rep, r, sn, e.m, from, o.DB,
			dump.LoadOptions{Threads: o.Threads, DropExisting: o.DropExisting, Progress: o.LoadProgress, Now: now})
	}()
	return e
}

// wait returns the load's outcome once it has ended.
func (e *earlyLoad) wait() (*dump.Manifest, *DatabaseReport, *Report, error) {
	<-e.done
	e.cancel()
	return e.m, e.dr, e.rep, e.err
}

// restoreFiles runs restore.Restore and fills a FilesReport.
func restoreFiles(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, ro restore.Options) (*FilesReport, error) {
	fr := &FilesReport{Damaged: []string{}, Problems: []string{}}
	res, err := restore.Restore(ctx, r, sn, ro)
	if err != nil {
		return fr, fmt.Errorf("restore files: %w", err)
	}
	fr.Files, fr.Dirs, fr.Bytes, fr.Written, fr.Skipped = res.Files, res.Dirs, res.Bytes, res.Written, res.Skipped
	fr.Damaged = append(fr.Damaged, res.Damaged...)
	fr.Warnings, fr.Seconds = res.Warnings, res.Duration.Seconds()
	if v := res.Verify; v != nil { // ro.Verify: checked as part of the restore
		fr.Verified, fr.Problems = v.Files, problems(v)
		fr.VerifySec = res.VerifyDuration.Seconds()
	}
	return fr, nil
}

// verifyFiles runs restore.Verify without the excluded snapshot paths.
func verifyFiles(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, ro restore.Options, excluded []string, fr *FilesReport, now func() time.Time) error {
	start := now()
	vo := ro
	vo.Progress = nil
	for _, e := range excluded {
		vo.Exclude = append(vo.Exclude, escapeGlob(e))
	}
	v, err := restore.Verify(ctx, r, sn, vo)
	if err != nil {
		return fmt.Errorf("verify files: %w", err)
	}
	fr.Verified, fr.Problems, fr.Excluded = v.Files, problems(v), excluded
	fr.VerifySec = now().Sub(start).Seconds()
	return nil
}

// escapeGlob quotes the path.Match meta characters of a literal path.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rewrite runs the PrestaShop staging rewrite (database first, so the
// production domains it finds are replaced in the files too) and reads it
// back. It returns the paths (relative to the shop) it changed on purpose.
func rewrite(ctx context.Context, db *sql.DB, shop *prestashop.Shop, t *prestashop.Target, sr *ShopReport, rep *Report) ([]string, []prestashop.Check, error) {
	if err := t.Validate(); err != nil {
		return nil, nil, fmt.Errorf("staging rewrite: %w", err)
	}
	if db != nil {
		dbRep, err := prestashop.RewriteDatabase(ctx, db, shop, *t)
		if err != nil {
			return nil, nil, fmt.Errorf("staging rewrite of the database: %w", err)
		}
		sr.Changes = append(sr.Changes, dbRep.Changes...)
		rep.Warnings = append(rep.Warnings, dbRep.Warnings...)
		t.ExtraDomains = dedupe(append(t.ExtraDomains, dbRep.OldDomains...))
	}
	fRep, err := prestashop.RewriteFiles(shop, *t)
	if err != nil {
		return nil, nil, fmt.Errorf("staging rewrite of the files: %w", err)
	}
	sr.Changes = append(sr.Changes, fRep.Changes...)
	sr.Files = fRep.Files
	rep.Warnings = append(rep.Warnings, fRep.Warnings...)
	excluded := append([]string{}, fRep.Files...)
	for _, c := range fRep.Changes {
		if c.Detail == "emptied" {
			excluded = append(excluded, c.What)
		}
	}
	checks, err := prestashop.Verify(ctx, db, shop, *t)
	if err != nil {
		return nil, nil, fmt.Errorf("read the staging rewrite back: %w", err)
	}
	sr.Checks = checks
	return excluded, checks, nil
}

func rewriteChecks(rep *Report, checks []prestashop.Check) {
	for _, c := range checks {
		detail := ""
		if !c.OK {
			detail = fmt.Sprintf("expected %q, got %q", c.Expected, c.Got)
		}
		rep.check(c.OK, "rewrite: "+c.What, detail)
	}
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// probe fetches url and expects a 200 with the shop's name in the page.
func probe(ctx context.Context, rep *Report, db *sql.DB, shop *prestashop.Shop, url string, client *http.Client) {
	pr := &ProbeReport{URL: url}
	rep.Probe = pr
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	if db != nil && shop != nil {
		q := "SELECT value FROM `" + strings.ReplaceAll(shop.DB.Prefix, "`", "``") + "configuration` WHERE name = 'PS_SHOP_NAME' ORDER BY id_shop IS NOT NULL, id_shop_group IS NOT NULL LIMIT 1"
		var name sql.NullString
		if err := db.QueryRowContext(ctx, q).Scan(&name); err == nil {
			pr.ShopName = name.String
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err == nil {
		var resp *http.Response
		resp, err = client.Do(req)
		if err == nil {
			pr.Status = resp.StatusCode
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
			resp.Body.Close()
			err = rerr
			if err == nil {
				page := string(body)
				pr.OK = resp.StatusCode == http.StatusOK && (pr.ShopName == "" || strings.Contains(page, pr.ShopName) || strings.Contains(page, html.EscapeString(pr.ShopName)))
			}
		}
	}
	if err != nil {
		pr.Error = err.Error()
	}
	what := fmt.Sprintf("probe %s answers 200", url)
	if pr.ShopName != "" {
		what += fmt.Sprintf(" with the shop name %q", pr.ShopName)
	}
	detail := fmt.Sprintf("status %d", pr.Status)
	if pr.Error != "" {
		detail = pr.Error
	} else if pr.Status == http.StatusOK && !pr.OK {
		detail = "the page does not contain the shop name"
	}
	rep.check(pr.OK, what, detail)
}
