package dump

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"sort"
	"strings"
)

// queryMap runs a query returning one row and maps column names (lower case) to values.
func queryMap(ctx context.Context, conn *sql.Conn, q string) (map[string]string, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return nil, err
	}
	vals, err := firstRow(rows)
	if err != nil {
		return nil, err
	}
	if vals == nil {
		return nil, sql.ErrNoRows
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		out[strings.ToLower(c)] = vals[i]
	}
	return out, nil
}

// queryStrings runs a query and returns its first column.
func queryStrings(ctx context.Context, conn *sql.Conn, q string) ([]string, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s.String)
	}
	return out, rows.Err()
}

// delimiterFor picks a client DELIMITER that does not occur in body.
func delimiterFor(body string) string {
	for _, d := range []string{";;", "$$", "//", ";;;;", "$$$$$$"} {
		if !strings.Contains(body, d) {
			return d
		}
	}
	return "$$shopvault_delimiter$$"
}

// compoundStatement writes a CREATE statement of a stored program with the session settings
// it was created with (sql_mode, collation_connection, optionally time_zone), between
// DELIMITER lines so that the stock client keeps its body whole, then resets the session.
func compoundStatement(b *strings.Builder, drop, create, sqlMode, collation, timeZone string) {
	b.WriteString(drop)
	b.WriteString(";\n")
	b.WriteString("SET SESSION sql_mode = " + quoteString(sqlMode) + ";\n")
	if collation != "" && strings.HasPrefix(collation, "utf8mb4") {
		b.WriteString("SET collation_connection = " + quoteString(collation) + ";\n")
	}
	if timeZone != "" {
		b.WriteString("SET SESSION time_zone = " + quoteString(timeZone) + ";\n")
	}
	d := delimiterFor(create)
	b.WriteString("DELIMITER " + d + "\n")
	b.WriteString(create)
	b.WriteString(d + "\n")
	b.WriteString("DELIMITER ;\n")
	b.WriteString("SET NAMES " + SessionCharset + ";\n")
	b.WriteString("SET SESSION sql_mode = " + quoteString(SessionSQLMode) + ";\n")
	if timeZone != "" {
		b.WriteString("SET SESSION time_zone = " + quoteString(SessionTimeZone) + ";\n")
	}
}

// dumpObjects writes the schema, routines, views, triggers, events and grants streams of db.
func (tw *tableWriter) dumpObjects(ctx context.Context, db *dbInfo, md *Database) error {
	conn := tw.s.conn
	qdb := quoteString(db.name)
	write := func(name, body string) error {
		_, err := tw.stream(ctx, db.name, name, func(w io.Writer) error {
			_, err := io.WriteString(w, body)
			return err
		})
		return err
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("dump %s of database %s: %w", what, quoteIdent(db.name), err)
	}

	// Schema: the database's defaults (the stream never names the database).
	var b strings.Builder
	b.WriteString(streamHeader("database defaults"))
	b.WriteString("ALTER DATABASE CHARACTER SET " + db.charset + " COLLATE " + db.collation + ";\n")
	if err := write(StreamSchema, b.String()); err != nil {
		return err
	}

	// Routines.
	b.Reset()
	b.WriteString(streamHeader("stored procedures and functions"))
	rows, err := conn.QueryContext(ctx, "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = "+qdb+" ORDER BY ROUTINE_TYPE, ROUTINE_NAME")
	if err != nil {
		return fail("routines", err)
	}
	type routine struct{ typ, name string }
	var routines []routine
	for rows.Next() {
		var r routine
		if err := rows.Scan(&r.typ, &r.name); err != nil {
			rows.Close()
			return fail("routines", err)
		}
		routines = append(routines, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("routines", err)
	}
	for _, r := range routines {
		typ := strings.ToUpper(r.typ)
		if typ != "PROCEDURE" && typ != "FUNCTION" {
			continue // PACKAGE (Oracle mode) is not supported
		}
		v, err := queryMap(ctx, conn, "SHOW CREATE "+typ+" "+quoteIdent(db.name)+"."+quoteIdent(r.name))
		if err != nil {
			return fail(strings.ToLower(typ)+" "+r.name, err)
		}
		create := v["create "+strings.ToLower(typ)]
		if create == "" {
			return fail(strings.ToLower(typ)+" "+r.name, fmt.Errorf("SHOW CREATE %s returned no text (the dump user needs SELECT on mysql.proc or to be its definer)", typ))
		}
		compoundStatement(&b, "DROP "+typ+" IF EXISTS "+quoteIdent(r.name), create, v["sql_mode"], v["collation_connection"], "")
		md.Routines = append(md.Routines, strings.ToLower(typ)+" "+r.name)
	}
	if err := write(StreamRoutines, b.String()); err != nil {
		return err
	}

	// Views, in dependency order (a view after the views it names).
	b.Reset()
	b.WriteString(streamHeader("views"))
	names, err := queryStrings(ctx, conn, "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = "+qdb+" ORDER BY TABLE_NAME")
	if err != nil {
		return fail("views", err)
	}
	if len(names) > 0 {
		// SHOW CREATE VIEW leaves out the database name only for the current database.
		if _, err := conn.ExecContext(ctx, "USE "+quoteIdent(db.name)); err != nil {
			return fail("views", err)
		}
	}
	creates := map[string]map[string]string{}
	for _, n := range names {
		v, err := queryMap(ctx, conn, "SHOW CREATE VIEW "+quoteIdent(n))
		if err != nil {
			return fail("view "+n, err)
		}
		creates[n] = v
	}
	for _, n := range orderViews(names, func(n string) string { return creates[n]["create view"] }) {
		v := creates[n]
		b.WriteString("DROP TABLE IF EXISTS " + quoteIdent(n) + ";\n")
		b.WriteString("DROP VIEW IF EXISTS " + quoteIdent(n) + ";\n")
		if c := v["collation_connection"]; strings.HasPrefix(c, "utf8mb4") {
			b.WriteString("SET collation_connection = " + quoteString(c) + ";\n")
		}
		b.WriteString(v["create view"] + ";\n")
		b.WriteString("SET NAMES " + SessionCharset + ";\n")
		md.Views = append(md.Views, n)
	}
	if err := write(StreamViews, b.String()); err != nil {
		return err
	}

	// Triggers, in their action order.
	b.Reset()
	b.WriteString(streamHeader("triggers"))
	names, err = queryStrings(ctx, conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = "+qdb+
		" ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER")
	if err != nil {
		return fail("triggers", err)
	}
	for _, n := range names {
		v, err := queryMap(ctx, conn, "SHOW CREATE TRIGGER "+quoteIdent(db.name)+"."+quoteIdent(n))
		if err != nil {
			return fail("trigger "+n, err)
		}
		compoundStatement(&b, "DROP TRIGGER IF EXISTS "+quoteIdent(n), v["sql original statement"], v["sql_mode"], v["collation_connection"], "")
		md.Triggers = append(md.Triggers, n)
	}
	if err := write(StreamTriggers, b.String()); err != nil {
		return err
	}

	// Events.
	b.Reset()
	b.WriteString(streamHeader("events"))
	names, err = queryStrings(ctx, conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = "+qdb+" ORDER BY EVENT_NAME")
	if err != nil {
		return fail("events", err)
	}
	for _, n := range names {
		v, err := queryMap(ctx, conn, "SHOW CREATE EVENT "+quoteIdent(db.name)+"."+quoteIdent(n))
		if err != nil {
			return fail("event "+n, err)
		}
		compoundStatement(&b, "DROP EVENT IF EXISTS "+quoteIdent(n), v["create event"], v["sql_mode"], v["collation_connection"], v["time_zone"])
		md.Events = append(md.Events, n)
	}
	if err := write(StreamEvents, b.String()); err != nil {
		return err
	}

	// Users and grants.
	b.Reset()
	b.WriteString("-- shopvault dump: users and grants on database " + quoteIdent(db.name) + "\n")
	b.WriteString("-- (loaded only by a full restore; names the original database)\n")
	if err := dumpGrants(ctx, conn, db.name, md, &b); err != nil {
		md.GrantsSkipped = err.Error()
		md.Users = nil
		b.WriteString("-- skipped: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
	}
	return write(StreamGrants, b.String())
}

// orderViews sorts views so that a view comes after every view whose name appears quoted
// in its definition.
func orderViews(names []string, def func(string) string) []string {
	var out []string
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		if done[n] || visiting[n] {
			return
		}
		visiting[n] = true
		d := def(n)
		for _, o := range names {
			if o != n && strings.Contains(d, quoteIdent(o)) {
				visit(o)
			}
		}
		visiting[n] = false
		done[n] = true
		out = append(out, n)
	}
	for _, n := range names {
		visit(n)
	}
	return out
}

// dumpGrants writes CREATE USER and GRANT statements for every account with privileges on
// database db (mysql.db, including wildcard patterns, tables_priv, columns_priv, procs_priv).
func dumpGrants(ctx context.Context, conn *sql.Conn, db string, md *Database, b *strings.Builder) error {
	qdb := quoteString(db)
	rows, err := conn.QueryContext(ctx, "SELECT User, Host, Db FROM mysql.db WHERE Db = "+qdb+" OR "+qdb+" LIKE Db"+
		" UNION SELECT User, Host, Db FROM mysql.tables_priv WHERE Db = "+qdb+
		" UNION SELECT User, Host, Db FROM mysql.columns_priv WHERE Db = "+qdb+
		" UNION SELECT User, Host, Db FROM mysql.procs_priv WHERE Db = "+qdb)
	if err != nil {
		return fmt.Errorf("read grants: %w", err)
	}
	type account struct{ user, host string }
	patterns := map[string]bool{db: true}
	seen := map[account]bool{}
	var accounts []account
	for rows.Next() {
		var a account
		var pat string
		if err := rows.Scan(&a.user, &a.host, &pat); err != nil {
			rows.Close()
			return fmt.Errorf("read grants: %w", err)
		}
		patterns[pat] = true
		if a.user == "" || seen[a] {
			continue
		}
		seen[a] = true
		accounts = append(accounts, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read grants: %w", err)
	}
	sort.Slice(accounts, func(i, j int) bool {
		if accounts[i].user != accounts[j].user {
			return accounts[i].user < accounts[j].user
		}
		return accounts[i].host < accounts[j].host
	})
	for _, a := range accounts {
		acct := quoteString(a.user) + "@" + quoteString(a.host)
		create, err := queryStrings(ctx, conn, "SHOW CREATE USER "+acct)
		if err != nil || len(create) == 0 {
			return fmt.Errorf("show create user %s: %v", acct, err)
		}
		b.WriteString(strings.Replace(create[0], "CREATE USER ", "CREATE USER IF NOT EXISTS ", 1) + ";\n")
		grants, err := queryStrings(ctx, conn, "SHOW GRANTS FOR "+acct)
		if err != nil {
			return fmt.Errorf("show grants for %s: %w", acct, err)
		}
		for _, g := range grants {
			if grantConcerns(g, patterns) {
				b.WriteString(g + ";\n")
			}
		}
		md.Users = append(md.Users, acct)
	}
	return nil
}

// grantConcerns reports whether a SHOW GRANTS line is global (ON *.*) or on one of the
// database name patterns.
func grantConcerns(g string, patterns map[string]bool) bool {
	i := strings.Index(g, " ON ")
	if i < 0 {
		return false
	}
	rest := g[i+4:]
	for _, p := range []string{"PROCEDURE ", "FUNCTION ", "PACKAGE BODY ", "PACKAGE "} {
		rest = strings.TrimPrefix(rest, p)
	}
	if strings.HasPrefix(rest, "*.*") {
		return true
	}
	for p := range patterns {
		if strings.HasPrefix(rest, quoteIdent(p)+".") {
			return true
		}
	}
	return false
}
