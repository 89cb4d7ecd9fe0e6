package dump

import (
	"strings"
	"time"
)

// ManifestFormat is the version of the Manifest JSON layout.
const ManifestFormat = 1

// Method is how the dump made its connections' snapshots consistent.
type Method string

const (
	// MethodAuto picks MethodBackupStage on MariaDB >= 10.4, MethodFTWRL otherwise.
	MethodAuto Method = ""
	// MethodBackupStage holds commits with BACKUP STAGE BLOCK_COMMIT while the snapshots open.
	MethodBackupStage Method = "backup-stage"
	// MethodFTWRL holds all writes with FLUSH TABLES WITH READ LOCK while the snapshots open.
	MethodFTWRL Method = "ftwrl"
	// MethodSingle uses one connection and takes no lock: consistent by its one snapshot,
	// without a GTID position. Used as the fallback when a lock wait times out.
	MethodSingle Method = "single-connection"
)

// Manifest describes one dump: how it was made and what each stream holds. It is JSON
// serialisable and stored inside the snapshot; Load and VerifyDatabase need it.
type Manifest struct {
	Format int `json:"format"`
	// DigestAlgorithm names how Table.Digest is computed (see DigestAlgorithm).
	DigestAlgorithm string `json:"digest_algorithm"`
	ServerVersion   string `json:"server_version"`
	// Method actually used; FallbackReason says why it is not the one asked for.
	Method         Method `json:"method"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	Threads        int    `json:"threads"`
	// Binlog is the binary log position of the snapshot (nil when binary logging is off).
	Binlog *BinlogPosition `json:"binlog,omitempty"`
	// SQLMode, Charset and TimeZone are the session settings the dump ran with; every stream
	// sets them again and Load replays them.
	SQLMode  string `json:"sql_mode"`
	Charset  string `json:"charset"`
	TimeZone string `json:"time_zone"`
	// ServerSQLMode and ServerTimeZone are the server's global settings (information).
	ServerSQLMode  string     `json:"server_sql_mode"`
	ServerTimeZone string     `json:"server_time_zone"`
	Started        time.Time  `json:"started"`
	Finished       time.Time  `json:"finished"`
	Databases      []Database `json:"databases"`
}

// BinlogPosition is a point in the server's binary log.
type BinlogPosition struct {
	File     string `json:"file"`
	Position uint64 `json:"position"`
	// GTID is @@gtid_binlog_pos at the snapshot; empty when it could not be read
	// consistently (single-connection method).
	GTID string `json:"gtid,omitempty"`
}

// Database is one dumped database.
type Database struct {
	Name         string `json:"name"`
	CharacterSet string `json:"character_set"`
	Collation    string `json:"collation"`
	// Streams in load order: StreamSchema, table streams (by table name), StreamRoutines,
	// StreamViews, StreamTriggers, StreamEvents, StreamGrants.
	Streams  []string `json:"streams"`
	Tables   []Table  `json:"tables"`
	Views    []string `json:"views,omitempty"`
	Triggers []string `json:"triggers,omitempty"`
	Routines []string `json:"routines,omitempty"`
	Events   []string `json:"events,omitempty"`
	// Users are the accounts with privileges on the database, as 'user'@'host'.
	Users []string `json:"users,omitempty"`
	// GrantsSkipped says why users and grants are not in the dump (e.g. no access to mysql.*).
	GrantsSkipped string `json:"grants_skipped,omitempty"`
	// Skipped lists objects the dump does not hold (fully), with why: sequences, the
	// history of system-versioned tables. The caller should report them.
	Skipped []string `json:"skipped,omitempty"`
}

// Table is one dumped base table.
type Table struct {
	Name   string `json:"name"`
	Engine string `json:"engine"`
	// Transactional is true for engines read from the consistent snapshot (InnoDB).
	Transactional bool `json:"transactional"`
	// Consistent is true when the rows are as of the dump's consistency point: transactional
	// tables always, MyISAM/Aria only with Options.LockNonTransactional.
	Consistent bool   `json:"consistent"`
	Stream     string `json:"stream"`
	// Columns are the dumped (non-generated) columns, in INSERT order.
	Columns []string `json:"columns"`
	// OrderBy are the columns the rows are sorted by (a primary or NOT NULL unique key,
	// KeyOrder true); empty for a table without such a key, dumped in natural order.
	OrderBy  []string `json:"order_by"`
	KeyOrder bool     `json:"key_order"`
	Rows     int64    `json:"rows"`
	// Bytes is the stream's size.
	Bytes  int64  `json:"bytes"`
	Digest string `json:"digest"`
	// HasForeignKeys disables index deferral on load.
	HasForeignKeys bool `json:"has_foreign_keys,omitempty"`
}

// Stream names inside a database. Table streams are "tables/" + TableStreamName(name).
const (
	StreamSchema   = "schema.sql"
	StreamRoutines = "routines.sql"
	StreamViews    = "views.sql"
	StreamTriggers = "triggers.sql"
	StreamEvents   = "events.sql"
	StreamGrants   = "grants.sql"
)

// TableStreamName returns the stream name of a table: "tables/<name>.sql" with every byte
// outside [A-Za-z0-9_$-] percent-encoded (so names are safe file names and stable).
func TableStreamName(table string) string {
	var b strings.Builder
	b.WriteString("tables/")
	for i := 0; i < len(table); i++ {
		c := table[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(hexByte(c)))
		}
	}
	b.WriteString(".sql")
	return b.String()
}

func hexByte(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// Database returns the manifest entry of database name, or nil.
func (m *Manifest) Database(name string) *Database {
	for i := range m.Databases {
		if m.Databases[i].Name == name {
			return &m.Databases[i]
		}
	}
	return nil
}
