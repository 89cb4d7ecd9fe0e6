package dump

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"
)

// Source reads back the streams written by a dump.
type Source interface {
	// OpenStream opens stream name of database (the names the Sink received).
	OpenStream(ctx context.Context, database, name string) (io.ReadCloser, error)
}

// DefaultDeferIndexesMinRows is the row count from which Load builds secondary indexes
// after the data, with LoadOptions.DeferIndexes.
const DefaultDeferIndexesMinRows = 200000

// DefaultLoadThreads is how many tables Load loads in parallel unless told otherwise.
// A table's load alternates between phases bound by the client (reading and converting
// its stream) and by the server (storing rows, building the indexes at commit, then the
// verification's scan), so more loaders than cores fill each other's gaps: on the
// 2-core benchmark machine 4 loaders cut the load of the 2.5 M-row PrestaShop-like
// database from 21-23 s to 18-21 s and a 0.5 M-row staging clone by ~15%, for ~20 MB
// more memory; 6 or 8 gave no more.
const DefaultLoadThreads = 4

// LoadOptions control a load.
type LoadOptions struct {
	// Threads is the number of tables loaded in parallel (0 means DefaultLoadThreads).
	Threads int
	// DropExisting drops the target database first if it has tables; without it such a
	// target is refused (ErrNotEmpty).
	DropExisting bool
	// Grants also loads the users and grants of the dump (grants.sql, with the database
	// name changed to the target's): for a full restore. Staging restores leave it off.
	Grants bool
	// DeferIndexes adds the secondary indexes of big tables (DeferIndexesMinRows) after
	// their data. That is faster when a table does not fit in the server's buffer pool;
	// when it does, building indexes as rows arrive costs less (measured: 18 s vs 30 s of
	// server CPU for a 150 MB PrestaShop-like dump), so it is off by default.
	DeferIndexes bool
	// DeferIndexesMinRows: with DeferIndexes, tables with at least this many rows get their
	// secondary indexes after the data; 0 means DefaultDeferIndexesMinRows.
	DeferIndexesMinRows int64
	// Inserts executes the dump's INSERT statements as they are. By default rows are loaded
	// with LOAD DATA LOCAL INFILE (converted from the INSERTs on the fly), which costs the
	// server much less; Load uses INSERTs anyway when the server has local_infile off.
	Inserts bool
	// Progress receives table events; nil means none.
	Progress Progress
	// Now is the clock for LoadReport times; nil means time.Now.
	Now func() time.Time
}

// LoadReport says what Load did.
type LoadReport struct {
	Database   string `json:"database"`
	Tables     int    `json:"tables"`
	Rows       int64  `json:"rows"`
	Bytes      int64  `json:"bytes"`
	Statements int64  `json:"statements"`
	// LoadDataStatements is how many of the INSERT statements were loaded as LOAD DATA LOCAL
	// rows.
	LoadDataStatements int64         `json:"load_data_statements"`
	Started            time.Time     `json:"started"`
	Duration           time.Duration `json:"duration"`
	// Verify is the time spent verifying tables, summed (each table is verified as soon as
	// it is loaded, while others still load, so this overlaps the loading).
	Verify time.Duration `json:"verify"`
	// Checks holds one verification per table (all OK when Load returns no error).
	Checks []TableCheck `json:"checks"`
}

// TableCheck is the verification of one loaded table against the manifest.
type TableCheck struct {
	Table      string `json:"table"`
	WantRows   int64  `json:"want_rows"`
	GotRows    int64  `json:"got_rows"`
	WantDigest string `json:"want_digest"`
	GotDigest  string `json:"got_digest"`
	// Err says why the table could not be checked (missing table or column).
	Err string `json:"error,omitempty"`
}

// OK reports whether the table matches the manifest.
func (c TableCheck) OK() bool {
	return c.Err == "" && c.WantRows == c.GotRows && c.WantDigest == c.GotDigest
}

func (c TableCheck) String() string {
	switch {
	case c.Err != "":
		return fmt.Sprintf("%s: %s", c.Table, c.Err)
	case c.WantRows != c.GotRows:
		return fmt.Sprintf("%s: %d rows, want %d", c.Table, c.GotRows, c.WantRows)
	case c.WantDigest != c.GotDigest:
		return fmt.Sprintf("%s: digest %.16s…, want %.16s… (same row count %d, different content)", c.Table, c.GotDigest, c.WantDigest, c.GotRows)
	}
	return c.Table + ": ok"
}

// ErrVerifyFailed is matched (errors.Is) by a *VerifyError.
var ErrVerifyFailed = errors.New("loaded database differs from the dump")

// ErrNotEmpty is returned when the target database already has tables.
var ErrNotEmpty = errors.New("target database is not empty")

// VerifyError lists the tables whose content differs from the manifest.
type VerifyError struct {
	Database string
	Failed   []TableCheck
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verify database %s: %d table(s) differ from the dump:", quoteIdent(e.Database), len(e.Failed))
	for _, c := range e.Failed {
		b.WriteString("\n  " + c.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrVerifyFailed) true.
func (e *VerifyError) Is(target error) bool { return target == ErrVerifyFailed }

// Load loads database `from` of the manifest, read from src, into the database named in
// cfg.DBName (created if missing; refused with ErrNotEmpty if it has tables unless
// DropExisting). Tables load in parallel with foreign key and unique checks off, in the
// session sql_mode/charset/time_zone of the dump, each in one transaction, their rows with
// LOAD DATA LOCAL INFILE converted from the dump's INSERTs (see LoadOptions.Inserts);
// optionally (DeferIndexes) big tables get their secondary indexes after the data. Each
// table's row count and digest are recomputed as soon as it is loaded; any difference is a
// *VerifyError naming each table. The report is returned also with a VerifyError.
func Load(ctx context.Context, cfg *mysql.Config, m *Manifest, from string, src Source, opts LoadOptions) (*LoadReport, error) {
	if m == nil {
		return nil, errors.New("load: nil manifest")
	}
	if _, err := newDigest(m.DigestAlgorithm); err != nil {
		return nil, fmt.Errorf("load: manifest: %w", err)
	}
	md := m.Database(from)
	if md == nil {
		var names []string
		for _, d := range m.Databases {
			names = append(names, d.Name)
		}
		return nil, fmt.Errorf("load: database %q is not in the dump (it has: %s)", from, strings.Join(names, ", "))
	}
	into := cfg.DBName
	if into == "" {
		return nil, errors.New("load: no target database name in the address (e.g. tcp(127.0.0.1:3306)/prestashop_copy)")
	}
	if systemSchemas[strings.ToLower(into)] {
		return nil, fmt.Errorf("load: refusing to load into system schema %q", into)
	}
	if opts.Threads <= 0 {
		opts.Threads = DefaultLoadThreads
	}
	if opts.DeferIndexesMinRows <= 0 {
		opts.DeferIndexesMinRows = DefaultDeferIndexesMinRows
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rep := &LoadReport{Database: into, Started: opts.Now().UTC()}

	pool, err := openPool(cfg, false)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	addr := describeAddr(cfg)
	ctl, err := loadSession(ctx, pool, addr, "")
	if err != nil {
		return nil, err
	}
	defer ctl.Close()

	var ntab int
	if err := ctl.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "+quoteString(into)).Scan(&ntab); err != nil {
		return nil, fmt.Errorf("load: inspect target %q: %w", into, err)
	}
	if ntab > 0 {
		if !opts.DropExisting {
			return nil, fmt.Errorf("load into %q on %s: %w: it has %d tables (use --drop-existing to replace it, or choose another database)", into, addr, ErrNotEmpty, ntab)
		}
		if _, err := ctl.ExecContext(ctx, "DROP DATABASE "+quoteIdent(into)); err != nil {
			return nil, fmt.Errorf("load: drop existing %q: %w", into, err)
		}
	}
	create := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(into)
	if md.CharacterSet != "" && md.Collation != "" {
		create += " CHARACTER SET " + md.CharacterSet + " COLLATE " + md.Collation
	}
	if _, err := ctl.ExecContext(ctx, create); err != nil {
		return nil, fmt.Errorf("load: create database %q: %w", into, err)
	}
	if _, err := ctl.ExecContext(ctx, "USE "+quoteIdent(into)); err != nil {
		return nil, fmt.Errorf("load: use %q: %w", into, err)
	}

	useLoadData := !opts.Inserts
	if useLoadData {
		var on sql.NullInt64
		if err := ctl.QueryRowContext(ctx, "SELECT @@local_infile").Scan(&on); err != nil || on.Int64 == 0 {
			useLoadData = false
		}
	}
	l := &loader{src: src, from: from, into: into, loadData: useLoadData, opts: opts, rep: rep}
	if err := l.execStream(ctx, ctl, StreamSchema, nil); err != nil {
		return nil, err
	}

	// Tables, biggest first, in parallel.
	// Each loaded table is verified at once on one more connection, overlapping the load
	// of the others (tables are not written again by the load).
	order := make([]int, len(md.Tables))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return md.Tables[order[i]].Bytes > md.Tables[order[j]].Bytes })
	checks := make([]TableCheck, len(md.Tables))
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan int)
	loaded := make(chan int, len(order))
	g.Go(func() error {
		defer close(ch)
		for _, i := range order {
			select {
			case ch <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	// Not gctx: the group's context ends when its Wait returns, the verification later.
	vctx, vcancel := context.WithCancel(ctx)
	defer vcancel()
	// As many verifiers as loaders: once the last tables are loading (or
	// all are), the verification of the rest would otherwise be the tail.
	vdone := make(chan error, opts.Threads)
	var vmu sync.Mutex
	for v := 0; v < opts.Threads; v++ {
		go func() {
			var err error
			for i := range loaded {
				if err != nil {
					continue
				}
				vstart := opts.Now()
				var c TableCheck
				c, err = verifyTable(vctx, pool, m.DigestAlgorithm, md.Tables[i], into)
				vmu.Lock()
				checks[i] = c
				rep.Verify += opts.Now().Sub(vstart)
				vmu.Unlock()
			}
			vdone <- err
		}()
	}
	for i := 0; i < opts.Threads; i++ {
		g.Go(func() error {
			conn, err := loadSession(gctx, pool, addr, into)
			if err != nil {
				return err
			}
			defer conn.Close()
			for i := range ch {
				if err := l.loadTable(gctx, conn, md.Tables[i]); err != nil {
					return err
				}
				loaded <- i
			}
			return nil
		})
	}
	err = g.Wait()
	close(loaded)
	if err != nil {
		vcancel()
	}
	var verr error
	for v := 0; v < opts.Threads; v++ {
		if e := <-vdone; e != nil && verr == nil {
			verr = e
		}
	}
	if err != nil {
		return nil, err
	}
	if verr != nil {
		return nil, fmt.Errorf("verify database %q: %w", into, verr)
	}
	rep.Tables = len(order)

	for _, name := range []string{StreamRoutines, StreamViews, StreamTriggers, StreamEvents} {
		if err := l.execStream(ctx, ctl, name, nil); err != nil {
			return nil, err
		}
	}
	if opts.Grants {
		rewrite := func(stmt string) string { return rewriteGrantDB(stmt, from, into) }
		if err := l.execStream(ctx, ctl, StreamGrants, rewrite); err != nil {
			return nil, err
		}
	}

	rep.Checks = checks
	rep.Duration = opts.Now().Sub(rep.Started)
	var failed []TableCheck
	for _, c := range checks {
		if !c.OK() {
			failed = append(failed, c)
		}
	}
	if len(failed) > 0 {
		return rep, &VerifyError{Database: into, Failed: failed}
	}
	return rep, nil
}

// loadSession opens a connection with the dump's session settings and checks off, using
// database db if not empty.
func loadSession(ctx context.Context, pool *sql.DB, addr, db string) (*sql.Conn, error) {
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, connectError(addr, err)
	}
	if err := conn.PingContext(ctx); err != nil {
		conn.Close()
		return nil, connectError(addr, err)
	}
	if err := setSession(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	stmts := []string{"SET SESSION foreign_key_checks = 0, unique_checks = 0"}
	if db != "" {
		stmts = append(stmts, "USE "+quoteIdent(db))
	}
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("load: %s: %w", q, err)
		}
	}
	return conn, nil
}

type loader struct {
	src  Source
	from string
	into string
	// loadData loads rows with LOAD DATA LOCAL instead of INSERTs.
	loadData bool
	opts     LoadOptions
	rep      *LoadReport
	mu       sync.Mutex
}

// execStream runs every statement of a stream on conn; rewrite (if not nil) may change each.
func (l *loader) execStream(ctx context.Context, conn *sql.Conn, name string, rewrite func(string) string) error {
	return l.execStreamBatched(ctx, conn, name, rewrite, 0)
}

// execStreamBatched is execStream committing every commitEvery INSERT statements in one
// transaction (0: autocommit each), which saves a log flush per statement.
func (l *loader) execStreamBatched(ctx context.Context, conn *sql.Conn, name string, rewrite func(string) string, commitEvery int) error {
	rc, err := l.src.OpenStream(ctx, l.from, name)
	if err != nil {
		return fmt.Errorf("load: open stream %s/%s: %w", l.from, name, err)
	}
	defer rc.Close()
	if commitEvery > 0 {
		if _, err := conn.ExecContext(ctx, "SET autocommit = 0"); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SET autocommit = 1")
	}
	inserts := 0
	cr := &countReader{r: rc}
	sr := NewStatementReader(cr)
	var n int64
	for {
		stmt, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("load: read stream %s/%s: %w", l.from, name, err)
		}
		q := string(stmt)
		if rewrite != nil {
			q = rewrite(q)
		}
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("load: stream %s/%s line %d: %w", l.from, name, sr.Line(), err)
		}
		n++
		if commitEvery > 0 && strings.HasPrefix(q, "INSERT") {
			if inserts++; inserts%commitEvery == 0 {
				if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
					return fmt.Errorf("load: stream %s/%s line %d: commit: %w", l.from, name, sr.Line(), err)
				}
			}
		}
	}
	if commitEvery > 0 {
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("load: stream %s/%s: commit: %w", l.from, name, err)
		}
	}
	l.mu.Lock()
	l.rep.Statements += n
	l.rep.Bytes += cr.n
	l.mu.Unlock()
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (l *loader) loadTable(ctx context.Context, conn *sql.Conn, t Table) error {
	if p := l.opts.Progress; p != nil {
		p.TableStarted(l.from, t.Name)
	}
	deferKeys := l.opts.DeferIndexes && !t.HasForeignKeys && t.Rows >= l.opts.DeferIndexesMinRows
	var keys []string
	seenCreate, statsPaused := false, false
	rewrite := func(stmt string) string {
		if seenCreate || !strings.HasPrefix(statementKeyword(stmt), "CREATE TABLE") {
			return stmt
		}
		seenCreate = true
		if deferKeys {
			if nc, k, ok := deferIndexes(stmt); ok {
				stmt, keys = nc, k
			}
		}
		stmt, statsPaused = pauseStatsRecalc(stmt)
		return stmt
	}
	if l.loadData {
		if err := l.loadTableStream(ctx, conn, t, rewrite); err != nil {
			return err
		}
	} else if err := l.execStreamBatched(ctx, conn, t.Stream, rewrite, 16); err != nil {
		return err
	}
	if len(keys) > 0 {
		q := "ALTER TABLE " + quoteIdent(t.Name) + " ADD " + strings.Join(keys, ", ADD ")
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("load: add indexes of %s after data: %w", quoteIdent(t.Name), err)
		}
	}
	if statsPaused {
		// The table gets its definition back; this metadata-only ALTER also makes
		// InnoDB compute its statistics, once, from all of its rows (checked by the
		// integration tests: an ANALYZE TABLE after it would do the same work again).
		q := "ALTER TABLE " + quoteIdent(t.Name) + " STATS_AUTO_RECALC=DEFAULT"
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("load: %s: %w", q, err)
		}
	}
	l.mu.Lock()
	l.rep.Rows += t.Rows
	l.mu.Unlock()
	if p := l.opts.Progress; p != nil {
		p.TableDone(l.from, t.Name, t.Rows, t.Bytes)
	}
	return nil
}

// statementKeyword returns the statement upper-cased from its first word, after leading
// white space and comments (only the first 64 bytes).
func statementKeyword(stmt string) string {
	s := stmt
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		switch {
		case strings.HasPrefix(s, "-- ") || strings.HasPrefix(s, "#"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*") && !strings.HasPrefix(s, "/*!"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			if len(s) > 64 {
				s = s[:64]
			}
			return strings.ToUpper(s)
		}
	}
}

// pauseStatsRecalc adds STATS_AUTO_RECALC=0 to the table options of an InnoDB SHOW CREATE
// TABLE statement that sets no statistics options of its own, and reports whether it did.
//
// InnoDB recalculates a table's persistent statistics in the background each time a tenth
// of its rows changed since the last time: a table loaded from empty is analysed dozens of
// times while its rows arrive (each pass samples every index and writes
// mysql.innodb_index_stats through InnoDB's internal SQL). On the benchmark database that
// was a quarter of the server's CPU during a load (29 -> 22 CPU-s, 19.2 -> 15.3 s). The
// loader sets the option back to DEFAULT once the rows are in.
func pauseStatsRecalc(create string) (string, bool) {
	up := strings.ToUpper(create)
	if strings.Contains(up, "STATS_AUTO_RECALC") || strings.Contains(up, "STATS_PERSISTENT") {
		return create, false
	}
	// The table options follow the line that closes the column list: ") ENGINE=InnoDB ...".
	i := strings.Index(create, "\n) ENGINE=")
	if i < 0 || strings.LastIndex(create, "\n) ENGINE=") != i {
		return create, false
	}
	opts := create[i+len("\n) ENGINE="):]
	if j := strings.IndexAny(opts, " \n"); j >= 0 {
		opts = opts[:j]
	}
	if !strings.EqualFold(opts, "InnoDB") {
		return create, false
	}
	return create[:i+2] + " STATS_AUTO_RECALC=0" + create[i+2:], true
}

// deferIndexes removes plain and unique secondary keys from a SHOW CREATE TABLE statement
// (not the primary key, FULLTEXT/SPATIAL, hash-based keys or a key that starts with the
// AUTO_INCREMENT column, which InnoDB needs) and returns them as ALTER TABLE ADD clauses. ok is
// false when the statement is not in the expected shape or has foreign keys.
func deferIndexes(create string) (string, []string, bool) {
	lines := strings.Split(create, "\n")
	if len(lines) < 3 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "(") || !strings.HasPrefix(lines[len(lines)-1], ")") {
		return create, nil, false
	}
	defs := lines[1 : len(lines)-1]
	autoInc := ""
	for _, d := range defs {
		t := strings.TrimSpace(d)
		if strings.Contains(t, "FOREIGN KEY") || strings.Contains(t, "REFERENCES") || strings.Contains(t, "WITHOUT OVERLAPS") {
			return create, nil, false
		}
		if strings.HasPrefix(t, "`") && strings.Contains(t, " AUTO_INCREMENT") {
			autoInc = t[:strings.Index(t[1:], "`")+2]
		}
	}
	var kept, keys []string
	for _, d := range defs {
		t := strings.TrimSuffix(strings.TrimSpace(d), ",")
		isKey := strings.HasPrefix(t, "KEY `") || strings.HasPrefix(t, "UNIQUE KEY `")
		if isKey && !strings.Contains(t, "USING HASH") {
			first := ""
			if i := strings.Index(t, " (`"); i >= 0 {
				rest := t[i+2:]
				if j := strings.Index(rest[1:], "`"); j >= 0 {
					first = rest[:j+2]
				}
			}
			if first == "" || first != autoInc {
				keys = append(keys, t)
				continue
			}
		}
		kept = append(kept, "  "+t)
	}
	if len(keys) == 0 {
		return create, nil, false
	}
	return lines[0] + "\n" + strings.Join(kept, ",\n") + "\n" + lines[len(lines)-1], keys, true
}

// rewriteGrantDB replaces the database name in a GRANT statement of grants.sql.
func rewriteGrantDB(stmt, from, into string) string {
	if from == into {
		return stmt
	}
	stmt = strings.ReplaceAll(stmt, " ON "+quoteIdent(from)+".", " ON "+quoteIdent(into)+".")
	esc := strings.ReplaceAll(strings.ReplaceAll(from, `_`, `\_`), `%`, `\%`)
	if esc != from {
		stmt = strings.ReplaceAll(stmt, " ON "+quoteIdent(esc)+".", " ON "+quoteIdent(into)+".")
	}
	return stmt
}

// VerifyDatabase recomputes the row count and digest of every table of database `from` of
// the manifest in database `into` reachable through db, and compares them. It returns one
// check per table and a *VerifyError naming each table that differs.
func VerifyDatabase(ctx context.Context, db *sql.DB, m *Manifest, from, into string) ([]TableCheck, error) {
	if _, err := newDigest(m.DigestAlgorithm); err != nil {
		return nil, fmt.Errorf("verify: manifest: %w", err)
	}
	md := m.Database(from)
	if md == nil {
		return nil, fmt.Errorf("verify: database %q is not in the dump", from)
	}
	checks := make([]TableCheck, len(md.Tables))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, t := range md.Tables {
		g.Go(func() error {
			var err error
			checks[i], err = verifyTable(gctx, db, m.DigestAlgorithm, t, into)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return checks, fmt.Errorf("verify database %q: %w", into, err)
	}
	var failed []TableCheck
	for _, c := range checks {
		if !c.OK() {
			failed = append(failed, c)
		}
	}
	if len(failed) > 0 {
		return checks, &VerifyError{Database: into, Failed: failed}
	}
	return checks, nil
}

// verifyTable checks table t of the manifest in database into. A table that cannot be read
// (missing, a column missing) is a failed check; the error is only for a cancelled ctx.
func verifyTable(ctx context.Context, db *sql.DB, algorithm string, t Table, into string) (TableCheck, error) {
	c := TableCheck{Table: t.Name, WantRows: t.Rows, WantDigest: t.Digest}
	rows, dg, err := TableDigest(ctx, db, algorithm, into, t.Name, t.Columns)
	if err != nil {
		if ctx.Err() != nil {
			return c, err
		}
		c.Err = err.Error()
		return c, nil
	}
	c.GotRows, c.GotDigest = rows, dg
	return c, nil
}

// TableDigest computes the row count and digest (with the named algorithm, see
// DigestAlgorithm) of table in database over the given columns, the way Dump computes them.
func TableDigest(ctx context.Context, db *sql.DB, algorithm, database, table string, columns []string) (int64, string, error) {
	dg, err := newDigest(algorithm)
	if err != nil {
		return 0, "", err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, "", err
	}
	// The session settings below must not leak into the caller's pool: discard the connection.
	defer func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}()
	if _, err := conn.ExecContext(ctx, "SET NAMES "+SessionCharset); err != nil {
		return 0, "", err
	}
	if err := setSession(ctx, conn); err != nil {
		return 0, "", err
	}
	all, err := readColumns(ctx, conn, database, table)
	if err != nil {
		return 0, "", err
	}
	live := all[table]
	if len(live) == 0 {
		return 0, "", fmt.Errorf("table %s.%s does not exist", quoteIdent(database), quoteIdent(table))
	}
	byName := map[string]column{}
	for _, c := range live {
		byName[c.name] = c
	}
	cols := make([]column, 0, len(columns))
	for _, n := range columns {
		c, ok := byName[n]
		if !ok {
			return 0, "", fmt.Errorf("column %s missing", quoteIdent(n))
		}
		cols = append(cols, c)
	}
	if len(cols) > 0 {
		err = scanRows(ctx, conn, selectRows(database, table, cols, nil), cols, func(tuple []byte) error {
			dg.add(tuple)
			return nil
		})
		if err != nil {
			return 0, "", err
		}
	}
	return dg.rows, dg.String(), nil
}
