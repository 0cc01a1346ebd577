// Package sqlite is idem's embedded default target and key store: a pure-Go
// SQLite (modernc.org/sqlite), so the binary needs no cgo.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/sqlplan"
	"modernc.org/sqlite" // also registers the "sqlite" driver
)

// Target is a SQLite database file.
type Target struct {
	sqlplan.Ledger
	db   *sql.DB
	path string
}

var _ idem.Target = (*Target)(nil)

// Open opens (creating if missing) the database at path. WAL lets readers
// see the last committed state while a load writes; synchronous=FULL keeps
// a committed load across power loss.
func Open(ctx context.Context, path string) (*Target, error) {
	if path == "" {
		return nil, idem.BadInput("sqlite: empty path")
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(600000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	x := execer{db}
	return &Target{db: db, path: path, Ledger: sqlplan.Ledger{
		D: dialect{}, X: x,
		DescribeTable: func(ctx context.Context, table string) (idem.Schema, error) { return describe(ctx, x, table) },
		Token: func(ctx context.Context, table string, part *idem.Partition) (string, error) {
			return stateToken(ctx, x, table, part)
		},
		NoLedger: func(err error) bool { return strings.Contains(err.Error(), "no such table") },
	}}, nil
}

// DB exposes the handle for tests and the key store.
func (t *Target) DB() *sql.DB { return t.db }

func (t *Target) Close() error { return t.db.Close() }

type dialect struct{}

func (dialect) Quote(name string) string       { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
func (dialect) Placeholder(int) string         { return "?" }
func (dialect) NotDistinct(a, b string) string { return a + " IS " + b }

// TypeName picks declared types whose SQLite affinity stores each idem type
// exactly. Numerics get TEXT affinity ("DECIMAL_TEXT"): SQLite's NUMERIC
// affinity turns any decimal it can into a REAL, keeping only 15 significant
// digits, so 12345678901234567890.5 would silently change. Canonical text is
// exact and compares equal exactly when the numbers are equal; arithmetic
// still works (SQLite converts on use), comparisons need CAST(... AS REAL).
// Dates and timestamps stay canonical text.
func (dialect) TypeName(t idem.Type) string {
	switch t {
	case idem.TypeInteger:
		return "INTEGER"
	case idem.TypeNumeric:
		return "DECIMAL_TEXT"
	case idem.TypeBoolean:
		return "BOOLEAN"
	case idem.TypeDate:
		return "DATE"
	case idem.TypeTimestamp:
		return "TIMESTAMP"
	}
	return "TEXT"
}

func (dialect) Bind(t idem.Type, v idem.Value) any {
	if v.Null {
		return nil
	}
	switch t {
	case idem.TypeInteger:
		if n, err := strconv.ParseInt(v.S, 10, 64); err == nil {
			return n
		}
	case idem.TypeBoolean:
		if v.S == "true" {
			return int64(1)
		}
		return int64(0)
	}
	return v.S
}

func (dialect) SelectExpr(col string, _ idem.Type) string { return col }

func (dialect) Decode(t idem.Type, v any) (idem.Value, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return idem.Null, nil
	case int64:
		if t == idem.TypeBoolean {
			return idem.V(strconv.FormatBool(x != 0)), nil
		}
		s = strconv.FormatInt(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		s = x
	case []byte:
		s = string(x)
	case time.Time:
		if t == idem.TypeDate {
			return idem.V(x.UTC().Format("2006-01-02")), nil
		}
		return idem.V(idem.FormatTimestamp(x)), nil
	case bool:
		return idem.V(strconv.FormatBool(x)), nil
	default:
		return idem.Value{}, fmt.Errorf("unexpected value %T", v)
	}
	c, err := idem.Canon(t, s)
	if err != nil {
		return idem.Value{}, fmt.Errorf("stored value %q %w", s, err)
	}
	return idem.V(c), nil
}

func typeOf(decl string) idem.Type {
	d := strings.ToUpper(decl)
	switch {
	case strings.Contains(d, "BOOL"):
		return idem.TypeBoolean
	case strings.Contains(d, "INT"):
		return idem.TypeInteger
	case strings.Contains(d, "TIMESTAMP"), strings.Contains(d, "DATETIME"):
		return idem.TypeTimestamp
	case strings.Contains(d, "DATE"):
		return idem.TypeDate
	case strings.Contains(d, "NUM"), strings.Contains(d, "DEC"), strings.Contains(d, "REAL"),
		strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return idem.TypeNumeric
	}
	return idem.TypeText
}

// queryer is what both *sql.DB and *sql.Conn offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type execer struct{ q queryer }

func (e execer) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := e.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, wrapErr(err)
	}
	return r.RowsAffected()
}

func (e execer) Query(ctx context.Context, q string, args []any, fn func([]any) error) error {
	rows, err := e.q.QueryContext(ctx, q, args...)
	if err != nil {
		return wrapErr(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return wrapErr(rows.Err())
}

// wrapErr turns SQLite's busy error into a message about the lock.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked") {
		return fmt.Errorf("another writer holds the database lock (waited the lock timeout): %w", err)
	}
	return err
}

func describe(ctx context.Context, x execer, table string) (idem.Schema, error) {
	var s idem.Schema
	err := x.Query(ctx, "SELECT name, type FROM pragma_table_info(?)", []any{table}, func(v []any) error {
		s = append(s, idem.Column{Name: fmt.Sprint(v[0]), Type: typeOf(fmt.Sprint(v[1]))})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("%q: %w", table, idem.ErrNoTable)
	}
	return s, nil
}

// Apply runs one load on a dedicated connection in a BEGIN IMMEDIATE
// transaction: SQLite has one writer per database, so that is the lock that
// serialises loads (per database, which covers table and partition).
func (t *Target) Apply(ctx context.Context, p *idem.Plan, in *idem.Input) (*idem.Result, error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return sqlplan.ApplyLoad(ctx, dialect{}, &tx{conn: conn, x: execer{conn}}, p, in)
}

type tx struct {
	conn  *sql.Conn
	x     execer
	begun bool
	stage string
	// rowid is the name the located scan read rowids by, for
	// DeleteLocated.
	rowid string
}

func (x *tx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	n, err := x.x.Exec(ctx, q, args...)
	return n, refused(err)
}

// SQLite's result codes for a row the table refuses (sqlite3.h).
const (
	sqliteConstraint = 19
	sqliteMismatch   = 20 // a STRICT table's type
	sqlitePrimaryKey = 1555
	sqliteUnique     = 2067
)

// refused turns the table refusing a row (NOT NULL, CHECK, a STRICT type)
// into an input error: a retry would fail the same way, so it is exit 2,
// not 1. A unique or primary-key violation is left as it is: the loader
// finds the clashing input line from its columns.
func refused(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if strings.Contains(se.Error(), "duplicate column name") {
		// --evolve adding "v" to a table with "V": SQLite's names ignore
		// case, so the column is there under another spelling.
		return &idem.InputError{Msg: "the table has this column under another letter case (SQLite column names ignore case); spell the input column as the table does: " + se.Error()}
	}
	c := se.Code()
	if c == sqlitePrimaryKey || c == sqliteUnique || (c&0xff != sqliteConstraint && c&0xff != sqliteMismatch) {
		return err
	}
	return &sqlplan.Refusal{InputError: &idem.InputError{Msg: "the table refused an input row: " + se.Error()}}
}
func (x *tx) Query(ctx context.Context, q string, args []any, fn func([]any) error) error {
	return x.x.Query(ctx, q, args, fn)
}

func (x *tx) Lock(ctx context.Context, p *idem.Plan) error {
	if _, err := x.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", p.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	if _, err := x.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("lock %s: %w", p.Table, wrapErr(err))
	}
	x.begun = true
	return nil
}

func (x *tx) EnsureLedger(ctx context.Context) error {
	d := dialect{}
	if _, err := x.Exec(ctx, sqlplan.LedgerDDL(d, "TEXT", "TEXT")); err != nil {
		return err
	}
	if _, err := x.Exec(ctx, sqlplan.DigestDDL(d, "CREATE TABLE", "TEXT", "INTEGER", "BLOB")); err != nil {
		return err
	}
	_, err := x.Exec(ctx, sqlplan.LedgerIndexDDL(d, "TEXT"))
	return err
}

func (x *tx) Describe(ctx context.Context, table string) (idem.Schema, error) {
	return describe(ctx, x.x, table)
}

// stageBatch rows go into one multi-row INSERT: far fewer statement
// executions than row-by-row, within SQLite's bound-variable limit.
const stageBatch = 256

// Stage always stages in SQLite: a UNIQUE violation there does not say
// which row of a multi-row INSERT failed, and the staging table's
// duplicate check does, with lines.
func (x *tx) Stage(ctx context.Context, p *sqlplan.Planner, in sqlplan.Rows, _ bool) (*sqlplan.Stage, error) {
	x.stage = "temp.idem_stage"
	if _, err := x.Exec(ctx, "DROP TABLE IF EXISTS "+x.stage); err != nil {
		return nil, err
	}
	if _, err := x.Exec(ctx, p.StagingDDL(x.stage, "CREATE TEMP TABLE", "")); err != nil {
		return nil, fmt.Errorf("create staging: %w", err)
	}
	cols := in.Columns()
	n := len(cols) + 2
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
	prefix := "INSERT INTO " + x.stage + " VALUES "
	full, err := x.conn.PrepareContext(ctx, prefix+strings.TrimSuffix(strings.Repeat(one+",", stageBatch), ","))
	if err != nil {
		return nil, err
	}
	defer full.Close()
	st := &sqlplan.Stage{Name: x.stage}
	args := make([]any, 0, n*stageBatch)
	rows := 0
	flush := func(stmt *sql.Stmt) error {
		if rows == 0 {
			return nil
		}
		if stmt == nil {
			_, err := x.conn.ExecContext(ctx, prefix+strings.TrimSuffix(strings.Repeat(one+",", rows), ","), args...)
			return err
		}
		_, err := stmt.ExecContext(ctx, args...)
		return err
	}
	d := dialect{}
	for {
		r, err := in.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		pos := in.Pos()
		st.Track(st.Rows, pos.File)
		for i, v := range r {
			args = append(args, d.Bind(cols[i].Type, v))
		}
		args = append(args, st.Rows, pos.Line)
		st.Rows++
		rows++
		if rows == stageBatch {
			if err := flush(full); err != nil {
				return nil, fmt.Errorf("stage rows: %w", err)
			}
			args, rows = args[:0], 0
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if err := flush(nil); err != nil {
		return nil, fmt.Errorf("stage rows: %w", err)
	}
	// SQLite joins only by nested loops: without an index on the key every
	// strategy statement would be quadratic. Built after the fill, once.
	if len(p.Plan.Key) > 0 {
		q := make([]string, len(p.Plan.Key))
		for i, k := range p.Plan.Key {
			q[i] = d.Quote(k)
		}
		if _, err := x.Exec(ctx, "CREATE INDEX temp.idem_stage_key ON idem_stage ("+strings.Join(q, ", ")+")"); err != nil {
			return nil, fmt.Errorf("index staging: %w", err)
		}
	}
	return st, nil
}

// StateToken for SQLite is the canonical fingerprint itself: reading the
// table in-process is cheap, and it needs no hash function inside SQLite.
func (x *tx) StateToken(ctx context.Context, table string, part *idem.Partition) (string, error) {
	return stateToken(ctx, x.x, table, part)
}

// TokenOf spells a fingerprint as a state token.
func (x *tx) TokenOf(fp idem.Fingerprint) string { return tokenOf(fp) }

func tokenOf(fp idem.Fingerprint) string { return strconv.FormatInt(fp.Rows, 10) + ":" + fp.Hex() }

func stateToken(ctx context.Context, x execer, table string, part *idem.Partition) (string, error) {
	schema, err := describe(ctx, x, table)
	if err != nil {
		return "", err
	}
	var fp idem.Fingerprint
	h := idem.NewRowHasher(schema)
	err = sqlplan.Scan(ctx, dialect{}, x, table, schema, part, func(_ idem.Schema, r idem.Row) error {
		fp.Add(h.Hash(r))
		return nil
	})
	if err != nil {
		return "", err
	}
	return tokenOf(fp), nil
}

func (x *tx) Commit(ctx context.Context) error {
	if x.stage != "" {
		if _, err := x.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+x.stage); err != nil {
			return err
		}
	}
	_, err := x.conn.ExecContext(ctx, "COMMIT")
	x.begun = false
	return wrapErr(err)
}

func (x *tx) Rollback(ctx context.Context) error {
	if !x.begun {
		return nil
	}
	x.begun = false
	_, err := x.conn.ExecContext(ctx, "ROLLBACK")
	if x.stage != "" {
		x.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+x.stage)
	}
	return err
}

// ConflictColumns reads the columns out of SQLite's "UNIQUE constraint
// failed: table.col, table.col" (sqlplan.ConflictNamer).
func (x *tx) ConflictColumns(err error) []string {
	const marker = "UNIQUE constraint failed: "
	msg := err.Error()
	i := strings.Index(msg, marker)
	if i < 0 {
		return nil
	}
	rest := msg[i+len(marker):]
	if j := strings.LastIndex(rest, " ("); j >= 0 {
		rest = rest[:j]
	}
	var cols []string
	for _, tc := range strings.Split(rest, ", ") {
		_, col, ok := strings.Cut(tc, ".")
		if !ok || col == "" {
			return nil
		}
		cols = append(cols, col)
	}
	return cols
}

// ScanLocated (sqlplan.RowLocator) reads the scope with each row's rowid.
// A column may take any of the rowid's three names, so the first one no
// column has is used; a WITHOUT ROWID table (its probe fails, which in
// SQLite leaves the transaction as it was) is not located.
func (x *tx) ScanLocated(ctx context.Context, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(loc, ver int64, row idem.Row) error) (bool, error) {
	x.rowid = ""
	for _, name := range []string{"rowid", "_rowid_", "oid"} {
		if !slices.ContainsFunc(schema, func(c idem.Column) bool { return strings.EqualFold(c.Name, name) }) {
			x.rowid = name
			break
		}
	}
	if x.rowid == "" {
		return false, nil
	}
	if err := x.Query(ctx, "SELECT "+x.rowid+" FROM "+dialect{}.Quote(table)+" LIMIT 0", nil, func([]any) error { return nil }); err != nil {
		x.rowid = ""
		return false, nil
	}
	return true, sqlplan.ScanLocatedBy(ctx, dialect{}, x.x, x.rowid, table, schema, part, limit, func(loc int64, row idem.Row) error {
		return fn(loc, 0, row) // SQLite's token is the content fingerprint: no versions
	})
}

// locBatch is how many rowids one DELETE names, as one JSON array: SQLite
// bounds the number of bound parameters, not their size.
const locBatch = 100_000

// DeleteLocated (sqlplan.RowLocator) deletes rows by the rowids
// ScanLocated read.
func (x *tx) DeleteLocated(ctx context.Context, table string, locs []int64) (int64, error) {
	if x.rowid == "" {
		return 0, errors.New("delete by rowid without a located scan")
	}
	q := "DELETE FROM " + dialect{}.Quote(table) + " WHERE " + x.rowid + " IN (SELECT value FROM json_each(?))"
	var total int64
	for len(locs) > 0 {
		n := min(len(locs), locBatch)
		b := make([]byte, 0, n*8+2)
		b = append(b, '[')
		for i, l := range locs[:n] {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, l, 10)
		}
		b = append(b, ']')
		c, err := x.Exec(ctx, q, string(b))
		if err != nil {
			return total, err
		}
		total += c
		locs = locs[n:]
	}
	return total, nil
}
