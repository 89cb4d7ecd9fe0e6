// Package recovery turns a snapshot back into a running shop and proves it:
// the `staging` target (the shop's web root into the target's own root, its
// database into the target's own database, the PrestaShop staging rewrite),
// the `full` target (original paths and databases, with users and grants, on
// this or a fresh server), re-verification of an existing restore, and the
// disaster-recovery drill (restore into scratch, verify, report RTO and RPO).
//
// Every operation returns a Report: what was restored, and a checklist of
// what was proven (file content hashes and metadata, table row counts and
// digests, each rewrite read back, an optional HTTP probe). A Report is JSON
// serialisable. Functions return ErrFailed (wrapped) when a check failed,
// together with the Report; other errors mean the operation could not go on,
// and the Report, when not nil, says how far it got.
//
// The package does not print, does not read configuration files and takes
// its clock from the options.
package recovery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// ErrFailed is wrapped in the error returned when the operation ran to its
// end but at least one check of the Report failed.
var ErrFailed = errors.New("recovery check failed")

// ErrNoDatabase is returned when the snapshot holds no dump but a database
// restore was asked for, or the opposite: databases but no server to load
// them into.
var ErrNoDatabase = errors.New("no database")

// Kinds of Report.
const (
	KindStaging = "staging"
	KindFull    = "full"
	KindDir     = "dir"
	KindDrill   = "drill"
)

// Check is one item of a Report's checklist.
type Check struct {
	What   string `json:"what"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Report says what a restore, verification or drill did and proved.
type Report struct {
	Kind         string    `json:"kind"`
	Verify       bool      `json:"verify_only,omitempty"` // a re-check of an existing restore
	Snapshot     string    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Hostname     string    `json:"hostname,omitempty"`
	// Root is where the files are; Source the snapshot directory restored
	// there (staging).
	Root   string `json:"root"`
	Source string `json:"source,omitempty"`

	Started time.Time `json:"started"`
	// RTOSeconds is the wall time of restore, load and verification.
	RTOSeconds float64 `json:"rto_seconds"`
	// RPOSeconds is the snapshot's age when the operation started.
	RPOSeconds float64 `json:"rpo_seconds"`

	Files      *FilesReport     `json:"files,omitempty"`
	Databases  []DatabaseReport `json:"databases,omitempty"`
	PrestaShop *ShopReport      `json:"prestashop,omitempty"`
	Probe      *ProbeReport     `json:"probe,omitempty"`
	Checklist  []Check          `json:"checklist"`
	Warnings   []string         `json:"warnings,omitempty"`
	// Scratch is what a drill left behind (Keep) or removed.
	Scratch *ScratchReport `json:"scratch,omitempty"`
}

// FilesReport covers the file part.
type FilesReport struct {
	Files     int64    `json:"files"`
	Dirs      int64    `json:"dirs"`
	Bytes     int64    `json:"bytes"`
	Written   int64    `json:"written"`
	Skipped   int64    `json:"skipped"`
	Damaged   []string `json:"damaged"`
	Warnings  []string `json:"warnings,omitempty"`
	Seconds   float64  `json:"seconds"`
	Verified  int64    `json:"verified_files"`
	Problems  []string `json:"problems"`
	Excluded  []string `json:"excluded_from_verify,omitempty"` // changed on purpose by the rewrite
	VerifySec float64  `json:"verify_seconds"`
}

// DatabaseReport covers one database.
type DatabaseReport struct {
	From    string            `json:"from"` // name in the snapshot
	Into    string            `json:"into"`
	Tables  int               `json:"tables"`
	Rows    int64             `json:"rows"`
	Bytes   int64             `json:"bytes"`
	Seconds float64           `json:"seconds"`
	Checks  []dump.TableCheck `json:"checks"`
	// Rewritten lists the tables the staging rewrite changed on purpose
	// (their digests were proven before it).
	Rewritten []string `json:"rewritten,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// ShopReport covers the PrestaShop staging rewrite.
type ShopReport struct {
	Detected bool                `json:"detected"`
	Skipped  string              `json:"skipped,omitempty"` // why the rewrite did not run
	Series   string              `json:"series,omitempty"`
	Version  string              `json:"version,omitempty"`
	Database string              `json:"database,omitempty"` // the shop's database in the snapshot
	Prefix   string              `json:"prefix,omitempty"`
	Changes  []prestashop.Change `json:"changes,omitempty"`
	Files    []string            `json:"files,omitempty"`
	Checks   []prestashop.Check  `json:"checks,omitempty"`
}

// ProbeReport is the HTTP probe of the clone.
type ProbeReport struct {
	URL      string `json:"url"`
	Status   int    `json:"status"`
	ShopName string `json:"shop_name,omitempty"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}

// ScratchReport says where a drill restored to and whether it is gone.
type ScratchReport struct {
	Dir      string `json:"dir"`
	Database string `json:"database,omitempty"`
	Kept     bool   `json:"kept"`
	Error    string `json:"cleanup_error,omitempty"`
}

// OK reports whether every check passed (and there was at least one).
func (r *Report) OK() bool { return len(r.Checklist) > 0 && len(r.Failed()) == 0 }

// Failed returns the checks that did not pass.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checklist {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

func (r *Report) check(ok bool, what, detail string) {
	r.Checklist = append(r.Checklist, Check{What: what, OK: ok, Detail: detail})
}

// result returns the error for a finished report: nil or ErrFailed.
func (r *Report) result() error {
	if f := r.Failed(); len(f) > 0 {
		names := make([]string, 0, len(f))
		for _, c := range f {
			names = append(names, c.What)
		}
		if len(names) > 5 {
			names = append(names[:5], fmt.Sprintf("and %d more", len(f)-5))
		}
		return fmt.Errorf("%w: %s", ErrFailed, strings.Join(names, "; "))
	}
	return nil
}

func newReport(kind string, sn *repo.Snapshot, now func() time.Time) *Report {
	start := now()
	return &Report{
		Kind: kind, Snapshot: sn.ID.String(), SnapshotTime: sn.Time, Hostname: sn.Hostname,
		Started: start, RPOSeconds: start.Sub(sn.Time).Seconds(), Checklist: []Check{},
	}
}

func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// LoadManifest reads the dump manifest of a snapshot.
func LoadManifest(ctx context.Context, r *repo.Repository, sn *repo.Snapshot) (*dump.Manifest, error) {
	if sn.DB == nil {
		return nil, fmt.Errorf("snapshot %s holds no database dump: %w", sn.ID.Short(), ErrNoDatabase)
	}
	data, err := r.LoadBlob(ctx, repo.BlobHandle{Type: repo.DataBlob, ID: sn.DB.Manifest}, nil)
	if err != nil {
		return nil, fmt.Errorf("dump manifest of snapshot %s: %w", sn.ID.Short(), err)
	}
	var m dump.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, &repo.CorruptError{What: "dump manifest of snapshot " + sn.ID.Short(), Err: err}
	}
	return &m, nil
}

// SnapshotSource reads the dump streams of a snapshot (/db/<database>/...).
// Make it with NewSnapshotSource.
type SnapshotSource struct {
	repo *repo.Repository
	tree repo.ID

	mu   sync.Mutex
	dirs map[string]*repo.Tree // directories of streams, each looked up once
}

// NewSnapshotSource returns the dump streams of the snapshot with root tree.
func NewSnapshotSource(r *repo.Repository, tree repo.ID) *SnapshotSource {
	return &SnapshotSource{repo: r, tree: tree, dirs: map[string]*repo.Tree{}}
}

// OpenStream implements dump.Source. Each directory of streams is read
// once: a walk from the root per stream cost several tree loads each, round
// trips on a remote repository.
func (s *SnapshotSource) OpenStream(ctx context.Context, database, name string) (io.ReadCloser, error) {
	full := path.Join("/db", database, name)
	dir := path.Dir(full)
	s.mu.Lock()
	t := s.dirs[dir]
	s.mu.Unlock()
	if t == nil {
		dn, dt, err := s.repo.FindNode(ctx, s.tree, dir)
		if err != nil {
			return nil, fmt.Errorf("stream %s of database %s: %w", name, database, err)
		}
		if dt == nil {
			return nil, fmt.Errorf("stream %s of database %s: %s is a %s, not a directory", name, database, dir, dn.Type)
		}
		s.mu.Lock()
		s.dirs[dir], t = dt, dt
		s.mu.Unlock()
	}
	n := t.Find(path.Base(full))
	if n == nil {
		return nil, fmt.Errorf("stream %s of database %s: %s: no such file or directory in the snapshot", name, database, full)
	}
	return s.repo.NewFileReader(ctx, n)
}

// withDB returns a copy of cfg using database name.
func withDB(cfg *mysql.Config, name string) *mysql.Config {
	c := cfg.Clone()
	c.DBName = name
	return c
}

func openDB(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", cfg.DBName, err)
	}
	return sql.OpenDB(conn), nil
}

// shopTarget fills the database fields of a rewrite target from the
// staging database's connection settings, where they are empty.
func shopTarget(t prestashop.Target, cfg *mysql.Config) prestashop.Target {
	if t.DBHost == "" {
		if cfg.Net == "tcp" {
			host, port, err := net.SplitHostPort(cfg.Addr)
			if err != nil {
				host = cfg.Addr
			}
			t.DBHost = host
			if p, err := strconv.Atoi(port); err == nil && t.DBPort == 0 && p != 3306 {
				t.DBPort = p
			}
		} else {
			t.DBHost = "localhost" // PHP's mysqli/PDO: the default socket
		}
	}
	if t.DBName == "" {
		t.DBName = cfg.DBName
	}
	if t.DBUser == "" {
		t.DBUser = cfg.User
	}
	if t.DBPassword == "" {
		t.DBPassword = cfg.Passwd
	}
	return t
}

// loadDatabase loads database from of m into cfg.DBName and records it.
func loadDatabase(ctx context.Context, rep *Report, r *repo.Repository, sn *repo.Snapshot, m *dump.Manifest, from string, cfg *mysql.Config, o dump.LoadOptions) (*DatabaseReport, error) {
	dr := DatabaseReport{From: from, Into: cfg.DBName}
	lr, err := dump.Load(ctx, cfg, m, from, NewSnapshotSource(r, sn.Tree), o)
	if lr != nil {
		dr.Tables, dr.Rows, dr.Bytes, dr.Seconds, dr.Checks = lr.Tables, lr.Rows, lr.Bytes, lr.Duration.Seconds(), lr.Checks
	}
	var ve *dump.VerifyError
	if err != nil && !errors.As(err, &ve) {
		dr.Error = err.Error()
		rep.Databases = append(rep.Databases, dr)
		rep.check(false, "database "+from+" loaded into "+cfg.DBName, err.Error())
		return &rep.Databases[len(rep.Databases)-1], fmt.Errorf("load database %s into %s: %w", from, cfg.DBName, err)
	}
	rep.Databases = append(rep.Databases, dr)
	tableChecks(rep, from, cfg.DBName, dr.Checks, nil)
	return &rep.Databases[len(rep.Databases)-1], nil
}

// tableChecks adds the checklist items of one database's table checks.
// Tables in expected are allowed to differ (changed by the rewrite).
func tableChecks(rep *Report, from, into string, checks []dump.TableCheck, expected map[string]bool) {
	var bad []string
	var rows int64
	n := 0
	for _, c := range checks {
		if expected[c.Table] {
			continue
		}
		n++
		rows += c.GotRows
		if !c.OK() {
			bad = append(bad, c.String())
		}
	}
	what := fmt.Sprintf("database %s -> %s: %d tables, row counts and digests match the dump", from, into, n)
	if len(bad) > 0 {
		rep.check(false, fmt.Sprintf("database %s -> %s: %d of %d tables differ from the dump", from, into, len(bad), n), strings.Join(bad, "; "))
		return
	}
	rep.check(true, what, fmt.Sprintf("%d rows", rows))
}

func filesChecks(rep *Report, fr *FilesReport) {
	if len(fr.Damaged) > 0 {
		rep.check(false, fmt.Sprintf("%d files could not be restored (damaged repository data)", len(fr.Damaged)), strings.Join(head(fr.Damaged, 20), ", "))
	}
	if fr.Problems == nil {
		fr.Problems = []string{}
	}
	if len(fr.Problems) > 0 {
		rep.check(false, fmt.Sprintf("files: %d differences from the snapshot", len(fr.Problems)), strings.Join(head(fr.Problems, 20), "; "))
		return
	}
	what := fmt.Sprintf("files: %d entries match the snapshot (content hashes and metadata)", fr.Verified)
	if len(fr.Excluded) > 0 {
		what += fmt.Sprintf(", %d rewritten on purpose not compared", len(fr.Excluded))
	}
	rep.check(true, what, "")
}

func head(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(append([]string{}, list[:n]...), fmt.Sprintf("... %d more", len(list)-n))
}

func problems(v *restore.VerifyResult) []string {
	out := []string{}
	for _, p := range v.Problems {
		out = append(out, p.String())
	}
	return out
}

// snapshotFilePaths returns the snapshot's file paths (not the dump).
func snapshotFilePaths(sn *repo.Snapshot) []string {
	var out []string
	for _, p := range sn.Paths {
		if p == "/db" || strings.HasPrefix(p, "/db/") {
			continue
		}
		out = append(out, p)
	}
	return out
}
