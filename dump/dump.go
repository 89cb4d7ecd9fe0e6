// Package dump makes consistent logical dumps of MariaDB databases as plain SQL streams
// (one per table, plus schema, routines, views, triggers, events and grants), and loads them
// back fast, proving the result with per-table row counts and digests.
//
// # Consistency
//
// Every dump connection reads from one START TRANSACTION WITH CONSISTENT SNAPSHOT at
// REPEATABLE READ. With MethodBackupStage (MariaDB >= 10.4) a control connection runs
// BACKUP STAGE START and BLOCK_DDL, reads the table list and column definitions (DDL is
// blocked, commits are not), then BLOCK_COMMIT, reads the binlog position and GTID, opens
// the snapshot on every worker connection and ends the backup stage: commits are held only
// for the moment the snapshots open. MethodFTWRL does the same under FLUSH TABLES WITH READ
// LOCK for older servers. Every lock statement is bounded by Options.LockTimeout
// (lock_wait_timeout, max_statement_time and a KILL QUERY backstop); when it times out the
// locks are released and the dump falls back to MethodSingle (one connection, no lock, no
// GTID), recording why in Manifest.FallbackReason.
//
// # DDL during a dump
//
// The dump never holds metadata locks on tables it is not reading (after each table it
// rolls back to a savepoint, as mariadb-dump does), so it does not block the shop's DDL.
// Instead DDL on a table that is still to be dumped ends the dump with a *SchemaChangedError
// naming the table: ALTER TABLE / TRUNCATE (InnoDB error 1412 on the snapshot read, or a
// column list different from the one read at the consistency point, which catches instant
// ALTERs that InnoDB does not report), DROP and RENAME (error 1146). DDL on a table that is
// already dumped does not matter. A new table created after the consistency point is not
// in the dump. So a dump is either consistent or fails loudly, never a silently wrong table.
// The caller retries later.
//
// # Streams
//
// Each stream is plain SQL that the stock client loads (`mariadb db < file`): a header that
// sets the session (names, sql_mode, time_zone, checks off), then for a table DROP TABLE IF
// EXISTS, CREATE TABLE and its rows in key order in multi-row INSERTs. Statements end at
// content-defined row boundaries (between MaxStatementBytes/8 and MaxStatementBytes), so an
// inserted or deleted row changes only the statement it is in and consecutive nights'
// streams deduplicate. Streams contain no timestamps and never name the database.
package dump

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"
)

// SessionSQLMode is the sql_mode of every dump and load session: not strict (zero dates
// load, as PrestaShop needs), NO_AUTO_VALUE_ON_ZERO (a 0 in an AUTO_INCREMENT column stays 0),
// and none of the modes that change how values or SHOW CREATE output look.
const SessionSQLMode = "NO_AUTO_VALUE_ON_ZERO"

// SessionTimeZone makes TIMESTAMP values dump and load in UTC, independent of the servers'
// time zones.
const SessionTimeZone = "+00:00"

// SessionCharset is the connection character set of dumps and loads.
const SessionCharset = "utf8mb4"

// DefaultMaxStatementBytes bounds one INSERT statement (a bigger row gets its own statement).
const DefaultMaxStatementBytes = 1 << 20

// DefaultLockTimeout bounds each lock wait when Options.LockTimeout is zero.
const DefaultLockTimeout = 10 * time.Second

// DefaultTableLockTimeout bounds a table lock wait when Options.TableLockTimeout is zero.
const DefaultTableLockTimeout = 5 * time.Minute

// systemSchemas are never dumped unless named explicitly.
var systemSchemas = map[string]bool{"mysql": true, "information_schema": true, "performance_schema": true, "sys": true}

// Options control a dump.
type Options struct {
	// Databases to dump. Empty: the database of the config (cfg.DBName) if set, else all
	// databases but the system schemas (mysql, information_schema, performance_schema, sys).
	Databases []string
	// Threads is the number of dump connections (>= 1; 0 means 1).
	Threads int
	// LockTimeout bounds every lock wait (BACKUP STAGE, FTWRL, LOCK TABLES); 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// TableLockTimeout bounds the wait for a table's lock while dumping it (held by a
	// running ALTER, or by a long write on a MyISAM/Aria table); the dump then fails naming
	// the table. 0 means DefaultTableLockTimeout.
	TableLockTimeout time.Duration
	// LockNonTransactional holds a read lock on the non-transactional (MyISAM, Aria, ...)
	// tables, taken at the consistency point and held until they are dumped, so they are
	// consistent with the rest (writers to those tables wait meanwhile). Without it they are
	// dumped as they are when read and reported with Table.Consistent false.
	LockNonTransactional bool
	// Method forces a consistency method; MethodAuto picks by server version.
	Method Method
	// MaxStatementBytes bounds INSERT statements; 0 means DefaultMaxStatementBytes.
	MaxStatementBytes int
	// Now is the clock for Manifest.Started/Finished; nil means time.Now.
	Now func() time.Time
	// Progress receives table events; nil means none.
	Progress Progress
}

// Progress receives per-table events from Dump and Load. Methods are called from the
// worker goroutines, concurrently; they must be fast and must not block.
type Progress interface {
	// TableStarted is called before a table's stream is produced (or loaded).
	TableStarted(database, table string)
	// TableDone is called after a table's stream is complete with its rows and bytes.
	TableDone(database, table string, rows, bytes int64)
}

// Sink receives the streams of a dump. WriteStream may be called concurrently from up to
// Options.Threads goroutines. It must read r to EOF and return nil, or return an error,
// which aborts the dump. database is the dumped database's name; name is a stream name
// (StreamSchema, TableStreamName(table), StreamViews, ...), stable across dumps.
type Sink interface {
	WriteStream(ctx context.Context, database, name string, r io.Reader) error
}

// ErrSchemaChanged is matched (errors.Is) by a *SchemaChangedError.
var ErrSchemaChanged = errors.New("table changed during the dump")

// ErrDatabaseNotFound is returned when a database to dump does not exist.
var ErrDatabaseNotFound = errors.New("database does not exist")

// SchemaChangedError reports DDL (ALTER, TRUNCATE, DROP, RENAME) on a table during a dump.
type SchemaChangedError struct {
	Database, Table string
	// What happened, e.g. "altered or truncated (MariaDB error 1412)".
	What string
	Err  error
}

func (e *SchemaChangedError) Error() string {
	return fmt.Sprintf("table %s.%s was %s during the dump; the dump is not usable: run the backup again when no schema change is running",
		quoteIdent(e.Database), quoteIdent(e.Table), e.What)
}

// Is makes errors.Is(err, ErrSchemaChanged) true.
func (e *SchemaChangedError) Is(target error) bool { return target == ErrSchemaChanged }

func (e *SchemaChangedError) Unwrap() error { return e.Err }

// errLockTimeout marks a lock statement that did not finish within the lock timeout.
var errLockTimeout = errors.New("lock wait timed out")

// errLockUnavailable marks a lock statement the user has no privilege for.
var errLockUnavailable = errors.New("lock not permitted")

// column is one column of a table.
type column struct {
	name      string
	colType   string
	k         kind
	generated bool
}

// tableInfo is what the dump knows about a table at the consistency point.
type tableInfo struct {
	name          string
	engine        string
	transactional bool
	size          int64
	cols          []column
	orderBy       []string
	keyOrder      bool
	hasFK         bool
	consistent    bool
}

// dbInfo is the state of one database at the consistency point.
type dbInfo struct {
	name, charset, collation string
	tables                   []*tableInfo
	skipped                  []string // objects not (fully) dumped, with why
}

// Dump dumps the databases of opts consistently into sink and returns the manifest. cfg
// says how to connect (its DBName is only used as the default database, see Options). On
// any error, including DDL on a table during the dump (*SchemaChangedError), a killed
// connection or a sink error, it returns a nil manifest: the dump is not complete.
func Dump(ctx context.Context, cfg *mysql.Config, opts Options, sink Sink) (*Manifest, error) {
	if opts.Threads < 0 {
		return nil, fmt.Errorf("dump: threads must be at least 1, got %d", opts.Threads)
	}
	if opts.Threads == 0 {
		opts.Threads = 1
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.TableLockTimeout <= 0 {
		opts.TableLockTimeout = DefaultTableLockTimeout
	}
	if opts.MaxStatementBytes <= 0 {
		opts.MaxStatementBytes = DefaultMaxStatementBytes
	}
	if opts.MaxStatementBytes < 1024 {
		opts.MaxStatementBytes = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch opts.Method {
	case MethodAuto, MethodBackupStage, MethodFTWRL, MethodSingle:
	default:
		return nil, fmt.Errorf("dump: unknown method %q (want %q, %q or %q)", opts.Method, MethodBackupStage, MethodFTWRL, MethodSingle)
	}
	if sink == nil {
		return nil, errors.New("dump: nil sink")
	}
	dbs := opts.Databases
	if len(dbs) == 0 && cfg.DBName != "" {
		dbs = []string{cfg.DBName}
	}

	pool, err := openPool(cfg, true)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	d := &dumper{pool: pool, opts: opts, sink: sink, addr: describeAddr(cfg)}
	m, err := d.run(ctx, dbs)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// A cancelled context kills the driver's connections, and
			// whichever statement notices first reports "bad connection":
			// the cause is the cancellation.
			return nil, fmt.Errorf("dump interrupted: %w (%v)", cerr, err)
		}
		return nil, err
	}
	return m, nil
}

// openPool opens a connection pool for cfg with our session charset, without a default
// database. With readAhead its connections read from the server ahead of the driver
// (readAheadConn), for the dump's row streams.
func openPool(cfg *mysql.Config, readAhead bool) (*sql.DB, error) {
	c := cfg.Clone()
	c.DBName = ""
	if err := c.Apply(mysql.Charset(SessionCharset, "")); err != nil {
		return nil, fmt.Errorf("database config: %w", err)
	}
	// The driver logs connection errors to stderr; a core package never prints (the errors
	// are returned anyway).
	c.Logger = quietLogger{}
	c.InterpolateParams = false
	c.MultiStatements = false
	c.ParseTime = false
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if readAhead && c.DialFunc == nil {
		c.DialFunc = dialReadAhead(c.Timeout)
	}
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, fmt.Errorf("database config: %w", err)
	}
	return sql.OpenDB(conn), nil
}

// quietLogger discards the driver's log output.
type quietLogger struct{}

func (quietLogger) Print(...any) {}

func describeAddr(cfg *mysql.Config) string {
	return fmt.Sprintf("%s(%s) as %q", cfg.Net, cfg.Addr, cfg.User)
}

// connectError turns a connection failure into an error saying what to do.
func connectError(addr string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1044, 1698:
			return fmt.Errorf("connect to MariaDB at %s: access denied: check user and password in the credentials (option) file: %w", addr, err)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, mysql.ErrInvalidConn) {
		return fmt.Errorf("connect to MariaDB at %s: server unreachable (is mariadbd running, and are socket/host/port right?): %w", addr, err)
	}
	return fmt.Errorf("connect to MariaDB at %s: %w", addr, err)
}

type dumper struct {
	pool *sql.DB
	opts Options
	sink Sink
	addr string

	ntLock    *sql.Conn    // holds LOCK TABLES ... READ on non-transactional tables
	ntPending atomic.Int64 // locked tables not yet dumped
	ntMu      sync.Mutex
}

// session is one connection with our session settings.
type session struct {
	conn *sql.Conn
	id   int64
}

func (d *dumper) open(ctx context.Context) (*session, error) {
	conn, err := d.pool.Conn(ctx)
	if err != nil {
		return nil, connectError(d.addr, err)
	}
	s := &session{conn: conn}
	if err := conn.PingContext(ctx); err != nil {
		conn.Close()
		return nil, connectError(d.addr, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&s.id); err != nil {
		conn.Close()
		return nil, connectError(d.addr, err)
	}
	if err := setSession(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	// Waiting for a table's lock while reading it (a running ALTER, a long write on a MyISAM
	// table) is bounded too.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", int(math.Ceil(d.opts.TableLockTimeout.Seconds())))); err != nil {
		conn.Close()
		return nil, fmt.Errorf("set session lock_wait_timeout: %w", err)
	}
	// With binary logging on, MariaDB logs SAVEPOINT into the transaction's binlog cache and
	// then keeps metadata locks on ROLLBACK TO SAVEPOINT; a dump session writes nothing, so
	// it turns binlogging off. Without the privilege, tables stay locked against DDL until
	// the dump ends (DDL then waits; the dump stays correct).
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil && !isMySQLError(err, 1227, 1193) {
		conn.Close()
		return nil, fmt.Errorf("set session sql_log_bin: %w", err)
	}
	return s, nil
}

// setSession applies the dump/load session settings.
func setSession(ctx context.Context, conn *sql.Conn) error {
	stmts := []string{
		"SET SESSION sql_mode = " + quoteString(SessionSQLMode) + ", time_zone = " + quoteString(SessionTimeZone) +
			", net_write_timeout = 3600, net_read_timeout = 3600, wait_timeout = 86400",
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
	}
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set session (%s): %w", q, err)
		}
	}
	// MariaDB only; a server without it has no statement time limit to lift.
	if _, err := conn.ExecContext(ctx, "SET SESSION max_statement_time = 0"); err != nil && !isMySQLError(err, 1193) {
		return fmt.Errorf("set session max_statement_time: %w", err)
	}
	return nil
}

func isMySQLError(err error, numbers ...uint16) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	for _, n := range numbers {
		if me.Number == n {
			return true
		}
	}
	return false
}

// boundedExec runs a lock statement on s, bounded by timeout: the server-side limits are
// set by the caller; as a backstop a KILL QUERY is sent from another connection.
func (d *dumper) boundedExec(ctx context.Context, s *session, q string, timeout time.Duration) error {
	var killed atomic.Bool
	timer := time.AfterFunc(timeout+2*time.Second, func() {
		killed.Store(true)
		kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = d.pool.ExecContext(kctx, "KILL QUERY "+strconv.FormatInt(s.id, 10))
	})
	_, err := s.conn.ExecContext(ctx, q)
	timer.Stop()
	if err != nil && (killed.Load() || isMySQLError(err, 1205, 1969, 1317, 3024)) {
		return fmt.Errorf("%s: not granted within %s: %w (%v)", q, timeout, errLockTimeout, err)
	}
	if isMySQLError(err, 1227, 1044, 1142) {
		return fmt.Errorf("%s: not permitted for this user (grant RELOAD, or LOCK TABLES for --lock-nontransactional): %w (%v)", q, errLockUnavailable, err)
	}
	return err
}

func (d *dumper) setLockBounds(ctx context.Context, s *session) error {
	secs := int(math.Ceil(d.opts.LockTimeout.Seconds()))
	if _, err := s.conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return fmt.Errorf("set lock_wait_timeout: %w", err)
	}
	if _, err := s.conn.ExecContext(ctx, fmt.Sprintf("SET SESSION max_statement_time = %.3f", d.opts.LockTimeout.Seconds())); err != nil && !isMySQLError(err, 1193) {
		return fmt.Errorf("set max_statement_time: %w", err)
	}
	return nil
}

func (d *dumper) run(ctx context.Context, dbs []string) (*Manifest, error) {
	m := &Manifest{
		Format:          ManifestFormat,
		DigestAlgorithm: DigestAlgorithm,
		SQLMode:         SessionSQLMode,
		Charset:         SessionCharset,
		TimeZone:        SessionTimeZone,
		Started:         d.opts.Now().UTC(),
	}
	ctl, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	defer ctl.conn.Close()
	if err := ctl.conn.QueryRowContext(ctx, "SELECT VERSION(), @@GLOBAL.sql_mode, @@GLOBAL.time_zone").
		Scan(&m.ServerVersion, &m.ServerSQLMode, &m.ServerTimeZone); err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}

	// Which databases.
	all, err := listDatabases(ctx, ctl.conn)
	if err != nil {
		return nil, err
	}
	if len(dbs) == 0 {
		for _, n := range all {
			if !systemSchemas[strings.ToLower(n)] {
				dbs = append(dbs, n)
			}
		}
		if len(dbs) == 0 {
			return nil, fmt.Errorf("no database to dump on %s (only system schemas exist)", d.addr)
		}
	} else {
		exists := map[string]bool{}
		for _, n := range all {
			exists[n] = true
		}
		seen := map[string]bool{}
		for _, n := range dbs {
			if !exists[n] {
				return nil, fmt.Errorf("dump database %q on %s: %w (check the name; SHOW DATABASES lists them)", n, d.addr, ErrDatabaseNotFound)
			}
			if seen[n] {
				return nil, fmt.Errorf("dump: database %q named twice", n)
			}
			seen[n] = true
		}
	}
	sort.Strings(dbs)

	method := d.opts.Method
	if method == MethodAuto {
		method = MethodFTWRL
		if backupStageSupported(m.ServerVersion) {
			method = MethodBackupStage
		}
	}
	threads := d.opts.Threads

	var workers []*session
	defer func() {
		for _, w := range workers {
			w.conn.Close()
		}
		d.releaseNT()
	}()
	var infos []*dbInfo
	if method != MethodSingle {
		workers, infos, err = d.lockedStart(ctx, ctl, method, dbs, threads, m)
		if errors.Is(err, errLockTimeout) || errors.Is(err, errLockUnavailable) {
			for _, w := range workers {
				w.conn.Close()
			}
			workers = nil
			d.releaseNT()
			m.FallbackReason = fmt.Sprintf("%s: %v; dumped on one connection without locks (no GTID)", method, err)
			method = MethodSingle
		} else if err != nil {
			return nil, err
		}
	}
	if method == MethodSingle {
		threads = 1
		w, err := d.open(ctx)
		if err != nil {
			return nil, err
		}
		workers = []*session{w}
		if err := startSnapshot(ctx, w); err != nil {
			return nil, err
		}
		m.Binlog, err = snapshotBinlog(ctx, w.conn)
		if err != nil {
			return nil, err
		}
		infos, err = readSchemas(ctx, w.conn, dbs)
		if err != nil {
			return nil, err
		}
	}
	m.Method = method
	m.Threads = threads

	if err := d.dumpAll(ctx, workers, infos, m); err != nil {
		return nil, err
	}
	m.Finished = d.opts.Now().UTC()
	return m, nil
}

// backupStageSupported reports whether the server is MariaDB >= 10.4.
func backupStageSupported(version string) bool {
	if !strings.Contains(strings.ToLower(version), "mariadb") {
		return false
	}
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 10 || major == 10 && minor >= 4
}

// lockedStart opens the worker snapshots at one commit point under BACKUP STAGE or FTWRL.
// It returns errLockTimeout (wrapped) when a lock was not granted in time; locks are
// released in every case.
func (d *dumper) lockedStart(ctx context.Context, ctl *session, method Method, dbs []string, threads int, m *Manifest) (workers []*session, infos []*dbInfo, err error) {
	for i := 0; i < threads; i++ {
		w, err := d.open(ctx)
		if err != nil {
			return workers, nil, err
		}
		workers = append(workers, w)
	}
	if err := d.setLockBounds(ctx, ctl); err != nil {
		return workers, nil, err
	}
	timeout := d.opts.LockTimeout
	var release string
	var steps []string
	if method == MethodBackupStage {
		release = "BACKUP STAGE END"
		steps = []string{"BACKUP STAGE START", "BACKUP STAGE BLOCK_DDL"}
	} else {
		release = "UNLOCK TABLES"
		steps = []string{"FLUSH TABLES WITH READ LOCK"}
	}
	defer func() {
		// Release whatever we hold; a failed release is reported unless an error is already.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, rerr := ctl.conn.ExecContext(rctx, release); rerr != nil && err == nil && !isMySQLError(rerr, 4165 /* no backup stage active */) {
			err = fmt.Errorf("%s: %w", release, rerr)
		}
	}()
	for _, q := range steps {
		if err := d.boundedExec(ctx, ctl, q, timeout); err != nil {
			return workers, nil, err
		}
	}
	// DDL is blocked now: the table list and column definitions are those of the snapshot.
	infos, err = readSchemas(ctx, ctl.conn, dbs)
	if err != nil {
		return workers, nil, err
	}
	if method == MethodBackupStage {
		if err := d.boundedExec(ctx, ctl, "BACKUP STAGE BLOCK_COMMIT", timeout); err != nil {
			return workers, nil, err
		}
	}
	// No commit can happen now: read the position, open the snapshots.
	m.Binlog, err = masterStatus(ctx, ctl.conn)
	if err != nil {
		return workers, nil, err
	}
	for _, w := range workers {
		if err := startSnapshot(ctx, w); err != nil {
			return workers, nil, err
		}
	}
	if d.opts.LockNonTransactional {
		if err := d.lockNT(ctx, infos); err != nil {
			return workers, nil, err
		}
	}
	return workers, infos, nil
}

// lockNT takes LOCK TABLES ... READ on all non-transactional tables on a separate
// connection (while commits and non-transactional writes are held by the caller).
func (d *dumper) lockNT(ctx context.Context, infos []*dbInfo) error {
	var names []string
	var n int64
	for _, db := range infos {
		for _, t := range db.tables {
			if !t.transactional {
				names = append(names, quoteIdent(db.name)+"."+quoteIdent(t.name)+" READ")
				n++
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	s, err := d.open(ctx)
	if err != nil {
		return err
	}
	d.ntLock = s.conn
	if err := d.setLockBounds(ctx, s); err != nil {
		return err
	}
	if err := d.boundedExec(ctx, s, "LOCK TABLES "+strings.Join(names, ", "), d.opts.LockTimeout); err != nil {
		return err
	}
	d.ntPending.Store(n)
	for _, db := range infos {
		for _, t := range db.tables {
			if !t.transactional {
				t.consistent = true
			}
		}
	}
	return nil
}

// ntDone is called when a locked non-transactional table is dumped; the last one releases
// the lock.
func (d *dumper) ntDone() {
	if d.ntPending.Add(-1) == 0 {
		d.releaseNT()
	}
}

func (d *dumper) releaseNT() {
	d.ntMu.Lock()
	defer d.ntMu.Unlock()
	if d.ntLock == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = d.ntLock.ExecContext(ctx, "UNLOCK TABLES")
	d.ntLock.Close()
	d.ntLock = nil
}

func startSnapshot(ctx context.Context, s *session) error {
	for _, q := range []string{"START TRANSACTION WITH CONSISTENT SNAPSHOT", "SAVEPOINT shopvault"} {
		if _, err := s.conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// masterStatus reads SHOW MASTER STATUS and the GTID position (nil when binlog is off).
func masterStatus(ctx context.Context, conn *sql.Conn) (*BinlogPosition, error) {
	rows, err := conn.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		if isMySQLError(err, 1227) { // no privilege: no position, not fatal
			return nil, nil
		}
		return nil, fmt.Errorf("show master status: %w", err)
	}
	vals, err := firstRow(rows)
	if err != nil {
		return nil, fmt.Errorf("show master status: %w", err)
	}
	if len(vals) < 2 || vals[0] == "" {
		return nil, nil
	}
	pos, _ := strconv.ParseUint(vals[1], 10, 64)
	b := &BinlogPosition{File: vals[0], Position: pos}
	var gtid sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&gtid); err == nil {
		b.GTID = gtid.String
	}
	return b, nil
}

// snapshotBinlog reads the binlog position of the open snapshot (MariaDB's
// binlog_snapshot_file/position status); nil when binlog is off.
func snapshotBinlog(ctx context.Context, conn *sql.Conn) (*BinlogPosition, error) {
	rows, err := conn.QueryContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return nil, fmt.Errorf("read snapshot binlog position: %w", err)
	}
	defer rows.Close()
	b := &BinlogPosition{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			b.File = v
		case "binlog_snapshot_position":
			b.Position, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if b.File == "" {
		return nil, nil
	}
	return b, nil
}

// firstRow returns the first row of rows as strings (NULL as "") and closes rows.
func firstRow(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	raw := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make([]string, len(cols))
	for i, r := range raw {
		out[i] = string(r)
	}
	return out, rows.Err()
}

func listDatabases(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// transactionalEngines are read from the consistent snapshot.
var transactionalEngines = map[string]bool{"innodb": true, "xtradb": true, "rocksdb": true, "tokudb": true}

// readSchemas reads, for each database, its tables with engines, columns and ordering keys.
func readSchemas(ctx context.Context, conn *sql.Conn, dbs []string) ([]*dbInfo, error) {
	var out []*dbInfo
	for _, name := range dbs {
		info, err := readSchema(ctx, conn, name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func readSchema(ctx context.Context, conn *sql.Conn, db string) (*dbInfo, error) {
	info := &dbInfo{name: db}
	q := "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = " + quoteString(db)
	if err := conn.QueryRowContext(ctx, q).Scan(&info.charset, &info.collation); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("dump database %q: %w", db, ErrDatabaseNotFound)
		}
		return nil, fmt.Errorf("read database %q: %w", db, err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_NAME, TABLE_TYPE, IFNULL(ENGINE, ''), IFNULL(DATA_LENGTH, 0) + IFNULL(INDEX_LENGTH, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "+
		quoteString(db)+" AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME")
	if err != nil {
		return nil, fmt.Errorf("list tables of %q: %w", db, err)
	}
	byName := map[string]*tableInfo{}
	for rows.Next() {
		t := &tableInfo{}
		var typ string
		if err := rows.Scan(&t.name, &typ, &t.engine, &t.size); err != nil {
			rows.Close()
			return nil, err
		}
		switch typ {
		case "BASE TABLE":
		case "SYSTEM VERSIONED":
			info.skipped = append(info.skipped, fmt.Sprintf("table %s: system-versioned; only its current rows are dumped, not its history", t.name))
		default:
			info.skipped = append(info.skipped, fmt.Sprintf("%s %s: not supported, not dumped", strings.ToLower(typ), t.name))
			continue
		}
		t.transactional = transactionalEngines[strings.ToLower(t.engine)]
		t.consistent = t.transactional
		info.tables = append(info.tables, t)
		byName[t.name] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables of %q: %w", db, err)
	}
	rows.Close()

	cols, err := readColumns(ctx, conn, db, "")
	if err != nil {
		return nil, err
	}
	for name, c := range cols {
		if t := byName[name]; t != nil {
			t.cols = c
		}
	}
	keys, err := readKeys(ctx, conn, db)
	if err != nil {
		return nil, err
	}
	for _, t := range info.tables {
		t.orderBy, t.keyOrder = chooseOrder(t.cols, keys[t.name])
	}
	rows, err = conn.QueryContext(ctx, "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = "+quoteString(db))
	if err != nil {
		return nil, fmt.Errorf("list foreign keys of %q: %w", db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			return nil, err
		}
		for _, n := range []string{child, parent} {
			if t := byName[n]; t != nil {
				t.hasFK = true
			}
		}
	}
	return info, rows.Err()
}

// readColumns reads the columns of one table (or of all tables of db when table is "").
func readColumns(ctx context.Context, conn *sql.Conn, db, table string) (map[string][]column, error) {
	q := "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IFNULL(CHARACTER_SET_NAME, ''), EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = " + quoteString(db)
	if table != "" {
		q += " AND TABLE_NAME = " + quoteString(table)
	}
	q += " ORDER BY TABLE_NAME, ORDINAL_POSITION"
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", db, err)
	}
	defer rows.Close()
	out := map[string][]column{}
	for rows.Next() {
		var tn, name, ctype, dtype, cs, extra string
		if err := rows.Scan(&tn, &name, &ctype, &dtype, &cs, &extra); err != nil {
			return nil, err
		}
		out[tn] = append(out[tn], column{
			name:      name,
			colType:   ctype,
			k:         columnKind(dtype, cs),
			generated: strings.Contains(strings.ToUpper(extra), "GENERATED"),
		})
	}
	return out, rows.Err()
}

// key is an index usable for ordering.
type key struct {
	name    string
	unique  bool
	notNull bool
	cols    []string
}

func readKeys(ctx context.Context, conn *sql.Conn, db string) (map[string][]*key, error) {
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, NULLABLE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "+
		quoteString(db)+" ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX")
	if err != nil {
		return nil, fmt.Errorf("read keys of %q: %w", db, err)
	}
	defer rows.Close()
	out := map[string][]*key{}
	for rows.Next() {
		var tn, in, col, nullable string
		var nonUnique int
		if err := rows.Scan(&tn, &in, &nonUnique, &col, &nullable); err != nil {
			return nil, err
		}
		ks := out[tn]
		if len(ks) == 0 || ks[len(ks)-1].name != in {
			ks = append(ks, &key{name: in, unique: nonUnique == 0, notNull: true})
			out[tn] = ks
		}
		k := ks[len(ks)-1]
		k.cols = append(k.cols, col)
		if strings.EqualFold(nullable, "YES") {
			k.notNull = false
		}
	}
	return out, rows.Err()
}

// chooseOrder picks the row order: the primary key, else the first unique key (by name) on
// NOT NULL columns, else none (keyOrder false): the table's natural order, which for InnoDB is
// its hidden row id, i.e. insertion order. That order is kept by a load (rows are inserted
// in it) and changes only where rows change, so it dumps deterministically and dedups well,
// and needs no sort of the whole table.
func chooseOrder(cols []column, keys []*key) ([]string, bool) {
	for _, k := range keys {
		if k.name == "PRIMARY" {
			return k.cols, true
		}
	}
	for _, k := range keys {
		if k.unique && k.notNull {
			return k.cols, true
		}
	}
	return nil, false
}

func sameColumns(a, b []column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// job is one unit of work for a dump worker.
type job struct {
	db    *dbInfo
	table *tableInfo // nil: the database's schema + object streams
	out   *Table
}

func (d *dumper) dumpAll(ctx context.Context, workers []*session, infos []*dbInfo, m *Manifest) error {
	var jobs []job
	for _, info := range infos {
		md := Database{Name: info.name, CharacterSet: info.charset, Collation: info.collation, Skipped: info.skipped}
		md.Streams = append(md.Streams, StreamSchema)
		md.Tables = make([]Table, len(info.tables))
		for i, t := range info.tables {
			md.Tables[i] = Table{Name: t.name, Engine: t.engine, Transactional: t.transactional, Stream: TableStreamName(t.name)}
			md.Streams = append(md.Streams, md.Tables[i].Stream)
		}
		md.Streams = append(md.Streams, StreamRoutines, StreamViews, StreamTriggers, StreamEvents, StreamGrants)
		m.Databases = append(m.Databases, md)
	}
	for i, info := range infos {
		md := &m.Databases[i]
		jobs = append(jobs, job{db: info})
		for j, t := range info.tables {
			jobs = append(jobs, job{db: info, table: t, out: &md.Tables[j]})
		}
	}
	// Locked non-transactional tables first (to release the lock early), then biggest first.
	sort.SliceStable(jobs, func(i, j int) bool {
		a, b := jobs[i], jobs[j]
		if (a.table == nil) != (b.table == nil) {
			return a.table == nil
		}
		if a.table == nil {
			return false
		}
		la, lb := !a.table.transactional && a.table.consistent, !b.table.transactional && b.table.consistent
		if la != lb {
			return la
		}
		return a.table.size > b.table.size
	})
	objects := map[string]*Database{}
	for i := range m.Databases {
		objects[m.Databases[i].Name] = &m.Databases[i]
	}

	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan job)
	g.Go(func() error {
		defer close(ch)
		for _, j := range jobs {
			select {
			case ch <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for _, w := range workers {
		w := w
		g.Go(func() error {
			tw := &tableWriter{d: d, s: w}
			for j := range ch {
				if j.table == nil {
					md := objects[j.db.name]
					if err := tw.dumpObjects(gctx, j.db, md); err != nil {
						return err
					}
					continue
				}
				if err := tw.dumpTable(gctx, j.db, j.table, j.out); err != nil {
					return err
				}
				if !j.table.transactional && j.table.consistent {
					d.ntDone()
				}
			}
			_, err := w.conn.ExecContext(gctx, "ROLLBACK")
			return err
		})
	}
	return g.Wait()
}

// tableWriter dumps tables on one worker session, reusing its buffers.
type tableWriter struct {
	d    *dumper
	s    *session
	stmt []byte
}

// stream runs produce, writing into a pipe that the sink reads, and returns the number of
// bytes written. An error of produce wins over the sink's.
func (tw *tableWriter) stream(ctx context.Context, db, name string, produce func(w io.Writer) error) (int64, error) {
	pr, pw := newStreamPipe().ends()
	done := make(chan error, 1)
	go func() {
		err := tw.d.sink.WriteStream(ctx, db, name, pr)
		if err == nil {
			pr.CloseWithError(errSinkStopped)
		} else {
			pr.CloseWithError(err)
		}
		done <- err
	}()
	cw := &countWriter{w: pw}
	perr := produce(cw)
	pw.CloseWithError(perr)
	serr := <-done
	switch {
	case perr != nil && errors.Is(perr, errSinkStopped):
		return cw.n, fmt.Errorf("write stream %s/%s: the sink returned before reading it to the end", db, name)
	case perr != nil && cw.err != nil && serr != nil:
		// The producer failed because the sink did.
		return cw.n, fmt.Errorf("write stream %s/%s: %w", db, name, serr)
	case perr != nil:
		return cw.n, perr
	case serr != nil:
		return cw.n, fmt.Errorf("write stream %s/%s: %w", db, name, serr)
	}
	return cw.n, nil
}

var errSinkStopped = errors.New("sink stopped reading")

type countWriter struct {
	w   io.Writer
	n   int64
	err error // first write error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// streamHeader starts every stream: session settings as at dump time.
func streamHeader(what string) string {
	return "-- shopvault dump: " + what + "\n" +
		"SET NAMES " + SessionCharset + ";\n" +
		"SET SESSION sql_mode = " + quoteString(SessionSQLMode) + ";\n" +
		"SET SESSION time_zone = " + quoteString(SessionTimeZone) + ";\n" +
		"SET SESSION foreign_key_checks = 0;\n" +
		"SET SESSION unique_checks = 0;\n"
}

// classify turns errors of reading a table into SchemaChangedError where they mean DDL.
func classify(db, table string, err error) error {
	switch {
	case isMySQLError(err, 1412):
		return &SchemaChangedError{Database: db, Table: table, What: "altered or truncated (MariaDB error 1412, table definition changed)", Err: err}
	case isMySQLError(err, 1146):
		return &SchemaChangedError{Database: db, Table: table, What: "dropped or renamed (MariaDB error 1146)", Err: err}
	case isMySQLError(err, 1054):
		return &SchemaChangedError{Database: db, Table: table, What: "altered (a column disappeared)", Err: err}
	case isMySQLError(err, 1205):
		return fmt.Errorf("dump table %s.%s: locked longer than the lock timeout (a schema change running on it?): %w", quoteIdent(db), quoteIdent(table), err)
	}
	return fmt.Errorf("dump table %s.%s: %w", quoteIdent(db), quoteIdent(table), err)
}

func (tw *tableWriter) dumpTable(ctx context.Context, db *dbInfo, t *tableInfo, out *Table) error {
	p := tw.d.opts.Progress
	if p != nil {
		p.TableStarted(db.name, t.name)
	}
	conn := tw.s.conn
	var name, create string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+quoteIdent(db.name)+"."+quoteIdent(t.name)).Scan(&name, &create); err != nil {
		return classify(db.name, t.name, err)
	}
	cur, err := readColumns(ctx, conn, db.name, t.name)
	if err != nil {
		return classify(db.name, t.name, err)
	}
	if !sameColumns(cur[t.name], t.cols) {
		if len(cur[t.name]) == 0 {
			return &SchemaChangedError{Database: db.name, Table: t.name, What: "dropped or renamed"}
		}
		return &SchemaChangedError{Database: db.name, Table: t.name, What: "altered (its columns differ from those at the consistency point)"}
	}
	var cols []column
	for _, c := range t.cols {
		if !c.generated {
			cols = append(cols, c)
		}
	}
	out.Columns = make([]string, len(cols))
	for i, c := range cols {
		out.Columns[i] = c.name
	}
	out.OrderBy, out.KeyOrder = t.orderBy, t.keyOrder
	out.Consistent = t.consistent
	out.HasForeignKeys = t.hasFK

	var dg digest
	n, err := tw.stream(ctx, db.name, out.Stream, func(w io.Writer) error {
		hdr := streamHeader("table "+quoteIdent(t.name)) +
			"DROP TABLE IF EXISTS " + quoteIdent(t.name) + ";\n" + create + ";\n"
		if _, err := io.WriteString(w, hdr); err != nil {
			return err
		}
		if len(cols) == 0 {
			return nil
		}
		return tw.writeRows(ctx, w, db.name, t, cols, &dg)
	})
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK TO SAVEPOINT shopvault"); err != nil {
		return fmt.Errorf("release table %s.%s: %w", quoteIdent(db.name), quoteIdent(t.name), err)
	}
	out.Rows = dg.rows
	out.Bytes = n
	out.Digest = dg.String()
	if p != nil {
		p.TableDone(db.name, t.name, out.Rows, out.Bytes)
	}
	return nil
}

// selectRows builds the SELECT of a table's dumped columns, in order if orderBy is set.
func selectRows(db, table string, cols []column, orderBy []string) string {
	var b []byte
	b = append(b, "SELECT "...)
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendIdent(b, c.name)
	}
	b = append(b, " FROM "...)
	b = appendIdent(b, db)
	b = append(b, '.')
	b = appendIdent(b, table)
	if len(orderBy) > 0 {
		b = append(b, " ORDER BY "...)
		for i, c := range orderBy {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendIdent(b, c)
		}
	}
	return string(b)
}

// rowBatch carries encoded row tuples from the reading goroutine to fn's goroutine.
type rowBatch struct {
	data []byte
	ends []int // end offset of each tuple in data
}

// batchBytes is the size at which a batch of tuples is handed over.
const batchBytes = 128 << 10

// scanRows runs q and calls fn with each row encoded as an SQL tuple "(v1,v2,...)", in
// order; the slice passed to fn is only valid during the call. Rows are read and encoded on
// the calling goroutine straight from the driver (no database/sql Scan); fn runs on a second
// goroutine, so reading and hashing/writing overlap. The driver parses integer and
// floating-point columns; they are formatted back exactly (shortest representation).
func scanRows(ctx context.Context, conn *sql.Conn, q string, cols []column, fn func(tuple []byte) error) error {
	free := make(chan *rowBatch, 3)
	for i := 0; i < cap(free); i++ {
		free <- &rowBatch{data: make([]byte, 0, batchBytes+4096)}
	}
	full := make(chan *rowBatch, cap(free))
	var failed atomic.Bool
	consumed := make(chan error, 1)
	go func() {
		var err error
		for b := range full {
			if err == nil {
				start := 0
				for _, e := range b.ends {
					if err = fn(b.data[start:e]); err != nil {
						failed.Store(true)
						break
					}
					start = e
				}
			}
			b.data, b.ends = b.data[:0], b.ends[:0]
			free <- b
		}
		consumed <- err
	}()
	perr := conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return errors.New("database driver cannot run queries directly")
		}
		rows, err := qc.QueryContext(ctx, q, nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		if n := len(rows.Columns()); n != len(cols) {
			return fmt.Errorf("query returned %d columns, want %d", n, len(cols))
		}
		dest := make([]driver.Value, len(cols))
		cur := <-free
		for {
			if err := rows.Next(dest); err != nil {
				if err == io.EOF {
					break
				}
				return err
			}
			buf := append(cur.data, '(')
			for i, v := range dest {
				if i > 0 {
					buf = append(buf, ',')
				}
				switch v := v.(type) {
				case nil:
					buf = append(buf, "NULL"...)
				case []byte:
					buf = appendValue(buf, v, cols[i].k)
				case int64:
					buf = strconv.AppendInt(buf, v, 10)
				case uint64:
					buf = strconv.AppendUint(buf, v, 10)
				case float32:
					buf = strconv.AppendFloat(buf, float64(v), 'g', -1, 32)
				case float64:
					buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
				case string:
					buf = appendValue(buf, []byte(v), cols[i].k)
				default:
					return fmt.Errorf("column %s: unexpected value type %T from the driver", quoteIdent(cols[i].name), v)
				}
			}
			cur.data = append(buf, ')')
			cur.ends = append(cur.ends, len(cur.data))
			if len(cur.data) >= batchBytes {
				if failed.Load() {
					return nil // fn's error is returned below
				}
				full <- cur
				cur = <-free
			}
		}
		if len(cur.ends) > 0 {
			full <- cur
		}
		return nil
	})
	close(full)
	cerr := <-consumed
	if perr != nil {
		return perr
	}
	return cerr
}

// writeRows streams the table's rows as INSERT statements with content-defined ends.
func (tw *tableWriter) writeRows(ctx context.Context, w io.Writer, db string, t *tableInfo, cols []column, dg *digest) error {
	maxStmt := tw.d.opts.MaxStatementBytes
	minStmt := maxStmt / 8
	// A statement ends after a row with probability len(row)/target once past minStmt.
	target := uint64(maxStmt / 4)
	var head []byte
	head = append(head, "INSERT INTO "...)
	head = appendIdent(head, t.name)
	head = append(head, " ("...)
	for i, c := range cols {
		if i > 0 {
			head = append(head, ',')
		}
		head = appendIdent(head, c.name)
	}
	head = append(head, ") VALUES\n"...)

	stmt := tw.stmt[:0]
	flush := func() error {
		if len(stmt) == 0 {
			return nil
		}
		stmt = append(stmt, ";\n"...)
		_, err := w.Write(stmt)
		stmt = stmt[:0]
		return err
	}
	err := scanRows(ctx, tw.s.conn, selectRows(db, t.name, cols, t.orderBy), cols, func(tuple []byte) error {
		h := dg.add(tuple)
		if len(stmt) > 0 && len(stmt)+len(tuple)+2 > maxStmt {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(stmt) == 0 {
			stmt = append(stmt, head...)
		} else {
			stmt = append(stmt, ",\n"...)
		}
		stmt = append(stmt, tuple...)
		if len(stmt) >= minStmt {
			l := uint64(len(tuple)) + 2
			if l >= target || h < l*(math.MaxUint64/target) {
				return flush()
			}
		}
		return nil
	})
	if err != nil {
		tw.stmt = stmt[:0]
		if errors.Is(err, errSinkStopped) || errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		var me *mysql.MySQLError
		if errors.As(err, &me) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, context.Canceled) {
			return classify(db, t.name, err)
		}
		return err
	}
	err = flush()
	tw.stmt = stmt[:0]
	return err
}
