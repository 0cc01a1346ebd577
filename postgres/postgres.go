// Package postgres is idem's PostgreSQL target: bulk data moves over the
// COPY protocol, strategies run as set-based statements from a temporary
// staging table, and loads of one table and partition are serialised with
// transaction-scoped advisory locks.
package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/sqlplan"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Target is a PostgreSQL database.
type Target struct {
	sqlplan.Ledger
	pool *pgxpool.Pool
}

var _ idem.Target = (*Target)(nil)

// Open connects to url (postgres:// or postgresql://). The session runs in
// UTC with ISO dates so values read back are canonical whatever the
// server's defaults.
func Open(ctx context.Context, url string) (*Target, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, idem.BadInput("postgres URL %s: %v", idem.RedactURL(url), redactErr(err, url))
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["datestyle"] = "ISO, YMD"
	cfg.ConnConfig.RuntimeParams["application_name"] = "idem"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %v", idem.RedactURL(url), redactErr(err, url))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s: %v", idem.RedactURL(url), redactErr(err, url))
	}
	x := execer{pool}
	return &Target{pool: pool, Ledger: sqlplan.Ledger{
		D: dialect{}, X: x,
		DescribeTable: func(ctx context.Context, table string) (idem.Schema, error) { return describe(ctx, x, table) },
		Token: func(ctx context.Context, table string, part *idem.Partition) (string, error) {
			return stateToken(ctx, x, table, part)
		},
		NoLedger: func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe) && pe.Code == "42P01"
		},
	}}, nil
}

// Pool exposes the connection pool for tests and the key store.
func (t *Target) Pool() *pgxpool.Pool { return t.pool }

func (t *Target) Close() error { t.pool.Close(); return nil }

// redactErr scrubs the password out of a driver error's text, which may
// quote the connection string.
func redactErr(err error, url string) string {
	s := err.Error()
	if cfg, perr := pgconn.ParseConfig(url); perr == nil && cfg.Password != "" {
		s = strings.ReplaceAll(s, cfg.Password, "***")
	}
	return s
}

type dialect struct{}

func (dialect) Quote(name string) string       { return pgx.Identifier{name}.Sanitize() }
func (dialect) Placeholder(n int) string       { return "$" + strconv.Itoa(n) }
func (dialect) NotDistinct(a, b string) string { return a + " IS NOT DISTINCT FROM " + b }
func (dialect) Bind(_ idem.Type, v idem.Value) any {
	if v.Null {
		return nil
	}
	return v.S
}

func (dialect) TypeName(t idem.Type) string {
	switch t {
	case idem.TypeInteger:
		return "bigint"
	case idem.TypeNumeric:
		return "numeric"
	case idem.TypeBoolean:
		return "boolean"
	case idem.TypeDate:
		return "date"
	case idem.TypeTimestamp:
		return "timestamptz"
	}
	return "text"
}

// SelectExpr reads every column as text: PostgreSQL's own text output is
// exact for numerics and, with the session settings of Open, canonical up
// to formatting that Canon normalises.
func (dialect) SelectExpr(col string, _ idem.Type) string { return col + "::text" }

func (dialect) Decode(t idem.Type, v any) (idem.Value, error) {
	if v == nil {
		return idem.Null, nil
	}
	s, ok := v.(string)
	if !ok {
		return idem.Value{}, fmt.Errorf("unexpected value %T", v)
	}
	c, err := idem.Canon(t, s)
	if err != nil {
		return idem.Value{}, fmt.Errorf("stored value %q %w", s, err)
	}
	return idem.V(c), nil
}

func typeOf(name string) idem.Type {
	switch name {
	case "int2", "int4", "int8":
		return idem.TypeInteger
	case "numeric", "float4", "float8":
		return idem.TypeNumeric
	case "bool":
		return idem.TypeBoolean
	case "date":
		return idem.TypeDate
	case "timestamp", "timestamptz":
		return idem.TypeTimestamp
	}
	return idem.TypeText
}

// querier is what a pool, a connection and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type execer struct{ q querier }

func (e execer) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := e.q.Exec(ctx, q, args...)
	if err != nil {
		return 0, wrapErr(err)
	}
	return tag.RowsAffected(), nil
}

func (e execer) Query(ctx context.Context, q string, args []any, fn func([]any) error) error {
	rows, err := e.q.Query(ctx, q, args...)
	if err != nil {
		return wrapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return wrapErr(rows.Err())
}

// wrapErr names lock timeouts, which are retryable.
func wrapErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return fmt.Errorf("another load of the same table or partition still holds the lock after --lock-timeout: %w", err)
	}
	return err
}

const describeSQL = `SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`

func describe(ctx context.Context, x execer, table string) (idem.Schema, error) {
	var s idem.Schema
	err := x.Query(ctx, describeSQL, []any{table}, func(v []any) error {
		s = append(s, idem.Column{Name: v[0].(string), Type: typeOf(v[1].(string))})
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

// Apply runs one load in one transaction on one connection. A client killed
// mid-load drops the connection and the server rolls everything back.
func (t *Target) Apply(ctx context.Context, p *idem.Plan, in *idem.Input) (*idem.Result, error) {
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	ptx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	x := &tx{tx: ptx, x: execer{ptx}}
	if t.pool.Config().MaxConns >= 2 {
		return sqlplan.ApplyLoad(ctx, dialect{}, asideTx{x, t.pool}, p, in)
	}
	return sqlplan.ApplyLoad(ctx, dialect{}, x, p, in)
}

type tx struct {
	tx pgx.Tx
	x  execer
}

// asideTx is a load transaction that may scan for the state token on a
// second pooled connection (sqlplan.AsideTokener); with a pool of one
// connection that would wait for itself.
type asideTx struct {
	*tx
	pool *pgxpool.Pool
}

func (x asideTx) StateTokenAside(ctx context.Context, table string, part *idem.Partition) (string, error) {
	return stateToken(ctx, execer{x.pool}, table, part)
}

func (x asideTx) AsideExecer() sqlplan.Execer { return execer{x.pool} }

// WrittenToken (sqlplan.WrittenTokener): the rows one COPY wrote all carry
// its (sub)transaction's id as xmin, so one row's xmin gives (n, n*xid,
// xid), as tokenSQL would compute it.
func (x *tx) WrittenToken(ctx context.Context, table string, part *idem.Partition, rows int64) (string, error) {
	if rows == 0 {
		return sqlplan.VersionToken{}.String(), nil
	}
	q := "SELECT xmin::text::bigint FROM " + dialect{}.Quote(table)
	var args []any
	if part != nil {
		q += " WHERE " + dialect{}.Quote(part.Column) + " = $1"
		args = append(args, part.Value)
	}
	var xid int64
	if err := x.tx.QueryRow(ctx, q+" LIMIT 1", args...).Scan(&xid); err != nil {
		return "", err
	}
	return sqlplan.VersionToken{N: rows, Sum: rows * xid, Max: xid}.String(), nil
}

func (x *tx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	n, err := x.x.Exec(ctx, q, args...)
	return n, refused(err)
}

// refused turns the table refusing a row in a statement after COPY (a
// value too long for the column, a NULL into NOT NULL, an integer out of
// range, a CHECK or foreign key constraint) into an input error: a retry
// would fail the same way, so it is exit 2, not 1. COPY's own refusals
// have their line (copyError); for these the loader finds it
// (sqlplan.Refusal) where it can.
func refused(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (!strings.HasPrefix(pe.Code, "22") && !strings.HasPrefix(pe.Code, "23")) || pe.Code == "23505" {
		// A unique violation is left as it is: the loader finds the
		// clashing input line from its columns (ConflictColumns).
		return err
	}
	msg := fmt.Sprintf("table %q refused an input row: %s", pe.TableName, pe.Message)
	if pe.TableName == "" {
		msg = "the table refused an input row: " + pe.Message
	}
	if pe.Detail != "" {
		msg += " (" + pe.Detail + ")"
	}
	return &sqlplan.Refusal{InputError: &idem.InputError{Column: pe.ColumnName, Msg: msg + " (SQLSTATE " + pe.Code + ")"}}
}
func (x *tx) Query(ctx context.Context, q string, args []any, fn func([]any) error) error {
	return x.x.Query(ctx, q, args, fn)
}

// lockKey hashes a lock name to the 64-bit space of advisory locks.
func lockKey(parts ...string) int64 {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
}

// Lock takes the table's advisory lock shared and the partition's
// exclusively for partition loads, the table's exclusively otherwise: loads
// of different partitions run side by side, a whole-table load excludes
// them all.
func (x *tx) Lock(ctx context.Context, p *idem.Plan) error {
	if _, err := x.tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", p.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	tk := lockKey("idem.table", p.Table)
	var err error
	if p.Partition != nil {
		_, err = x.tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock($2)", tk, lockKey("idem.partition", p.Table, p.Partition.String()))
		if err == nil {
			// First loads of several partitions of a table that does not
			// exist yet would each create it, and all but one fail on the
			// catalog's unique index: they take turns until it exists.
			_, err = x.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1) WHERE to_regclass($2) IS NULL",
				lockKey("idem.create", p.Table), dialect{}.Quote(p.Table))
		}
	} else {
		_, err = x.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", tk)
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", p.Table, wrapErr(err))
	}
	// Data statements may wait for row locks of writers outside idem; the
	// same bound applies, but the DDL below should not be cut short by it.
	return nil
}

func (x *tx) EnsureLedger(ctx context.Context) error {
	var exists bool
	if err := x.tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", sqlplan.LedgerTable, sqlplan.DigestTable).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	// Creating the same table from two sessions at once fails on the
	// catalog's unique index; one lock makes the second see the first's.
	if _, err := x.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("idem.ledger")); err != nil {
		return wrapErr(err)
	}
	d := dialect{}
	if _, err := x.tx.Exec(ctx, sqlplan.LedgerDDL(d, "text", "text")); err != nil {
		return err
	}
	if _, err := x.tx.Exec(ctx, sqlplan.LedgerIndexDDL(d, "text")); err != nil {
		return err
	}
	if _, err := x.tx.Exec(ctx, sqlplan.DigestDDL(d, "CREATE UNLOGGED TABLE", "text", "bigint", "bytea")); err != nil {
		return err
	}
	// Row hashes do not compress; storing them as they are saves the CPU
	// that pglz would spend failing to.
	_, err := x.tx.Exec(ctx, "ALTER TABLE "+d.Quote(sqlplan.DigestTable)+" ALTER COLUMN data SET STORAGE EXTERNAL")
	return err
}

func (x *tx) Describe(ctx context.Context, table string) (idem.Schema, error) {
	return describe(ctx, x.x, table)
}

const stageName = "idem_stage"

// Stage streams the input over COPY in CSV form: into a temporary staging
// table, or, for a load into an empty scope, straight into the target, which
// is what psql's \copy costs and no more. CSV rather than binary because
// every value is already canonical text, which PostgreSQL parses as fast as
// \copy does, and because unquoted-empty vs quoted-empty carries NULL vs ”
// exactly.
var _ sqlplan.KeyEnforcer = (*tx)(nil)

func (x *tx) EnforcesKey(ctx context.Context, table string, key []string) (bool, error) {
	var ok bool
	err := x.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i
	WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
	AND ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) <@ $2::text[])`,
		dialect{}.Quote(table), key).Scan(&ok)
	return ok, err
}

func (x *tx) Stage(ctx context.Context, p *sqlplan.Planner, in sqlplan.Rows, direct bool) (*sqlplan.Stage, error) {
	d := dialect{}
	names := in.Columns().Names()
	into := d.Quote(p.Plan.Table)
	st := &sqlplan.Stage{Name: stageName, Direct: direct}
	if !direct {
		if _, err := x.tx.Exec(ctx, p.StagingDDL(stageName, "CREATE TEMP TABLE", " ON COMMIT DROP")); err != nil {
			return nil, fmt.Errorf("create staging: %w", err)
		}
		names = append(names, sqlplan.SeqCol, sqlplan.LineCol)
		into = stageName
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = d.Quote(n)
	}
	copySQL := fmt.Sprintf("COPY %s (%s) FROM STDIN WITH (FORMAT csv)", into, strings.Join(quoted, ", "))
	if err := copyRows(ctx, x.tx.Conn().PgConn(), copySQL, in, st); err != nil {
		return nil, err
	}
	if !direct && !(p.Delta && st.Rows < smallDelta) {
		// Fresh statistics let the planner pick hash joins for the
		// strategy statements instead of guessing from an empty table. A
		// small delta is joined by key probes anyway (BeforeDelta).
		if _, err := x.tx.Exec(ctx, "ANALYZE "+stageName); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// recentRows is how many row positions copyRows remembers. PostgreSQL
// reports a failing COPY row by its number; it fails on a row shortly after
// receiving it, so only the last rows sent need to be mapped back to files.
const recentRows = 1 << 18

var errCopyEnded = errors.New("copy ended")

// copyRows runs COPY from a pipe that a goroutine fills with CSV. An input
// error ends the COPY and is what the caller gets back; a data error the
// server finds (a duplicate key, a value too large for the column) becomes
// an *idem.InputError at the row's file and line.
func copyRows(ctx context.Context, pc *pgconn.PgConn, copySQL string, in sqlplan.Rows, st *sqlplan.Stage) error {
	pr, pw := io.Pipe()
	recent := make([]idem.Pos, recentRows)
	var inErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		inErr = writeCSV(pw, in, st, recent, !st.Direct)
		pw.CloseWithError(inErr)
	}()
	_, err := pc.CopyFrom(ctx, pr, copySQL)
	// The server may end the COPY first (a duplicate key, a value too long):
	// the writer then fails on the closed pipe, and the server's error is
	// the one to report.
	pr.CloseWithError(errCopyEnded)
	wg.Wait()
	if inErr != nil && !(errors.Is(inErr, errCopyEnded) && err != nil) {
		return inErr
	}
	if err != nil {
		return copyError(err, st, recent)
	}
	return nil
}

func copyError(err error, st *sqlplan.Stage, recent []idem.Pos) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (!strings.HasPrefix(pe.Code, "22") && !strings.HasPrefix(pe.Code, "23")) {
		return fmt.Errorf("copy: %w", err)
	}
	msg := pe.Message
	if pe.Code == "23505" {
		msg = "duplicate key in the input: " + strings.TrimSuffix(pe.Detail, " already exists.") + " is on an earlier row too (use --dedupe first|last to keep one)"
	} else if pe.Detail != "" {
		msg += ": " + pe.Detail
	}
	ie := &idem.InputError{Msg: msg, Err: nil}
	// The context reads `COPY name, line N, column c: "v"` for a value
	// COPY could not take and `COPY name, line N: "row"` for a row the
	// table refused; N counts records from 1.
	if _, after, ok := strings.Cut(pe.Where, ", line "); ok {
		numText := after[:len(after)-len(strings.TrimLeft(after, "0123456789"))]
		if n, perr := strconv.ParseInt(numText, 10, 64); perr == nil && n >= 1 && n <= st.Rows && st.Rows-n < recentRows {
			pos := recent[(n-1)%recentRows]
			ie.File, ie.Line = pos.File, pos.Line
		} else if perr == nil {
			ie.File, ie.Msg = "input", fmt.Sprintf("row %d: %s", n, msg)
		}
	}
	return ie
}

func writeCSV(w io.Writer, in sqlplan.Rows, st *sqlplan.Stage, recent []idem.Pos, bookkeeping bool) error {
	buf := make([]byte, 0, 256<<10)
	for {
		r, err := in.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		pos := in.Pos()
		st.Track(st.Rows, pos.File)
		recent[st.Rows%recentRows] = pos
		for i, v := range r {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendCSV(buf, v)
		}
		if bookkeeping {
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, st.Rows, 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, pos.Line, 10)
		}
		buf = append(buf, '\n')
		st.Rows++
		if len(buf) >= 240<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

// appendCSV writes one field: NULL as nothing, everything else quoted when
// it is empty or holds a delimiter, quote or line break (or is the
// end-of-data marker).
func appendCSV(b []byte, v idem.Value) []byte {
	if v.Null {
		return b
	}
	if v.S != "" && !strings.ContainsAny(v.S, ",\"\r\n") && v.S != `\.` {
		return append(b, v.S...)
	}
	b = append(b, '"')
	for i := 0; i < len(v.S); i++ {
		if v.S[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, v.S[i])
	}
	return append(b, '"')
}

// tokenSQL summarises the scope by its rows' creating transaction ids:
// any insert, update or delete after a load adds a row version with a newer
// xmin or changes the count, so (count, sum, max) of xmin changes with it.
// It reads no column data. Rows are grouped by xmin first because the
// xid-to-bigint conversion goes through text and costs more than the scan:
// a bulk-loaded scope has a handful of distinct xmins, so the inner hash
// aggregate leaves only a few conversions (about 0.55x of converting every
// row, for 1M rows here). A dump and restore rewrites the xmins: the token
// then differs and the fast path is merely missed.
const tokenSQL = "SELECT coalesce(sum(n), 0)::bigint, coalesce(sum(x::text::bigint * n), 0)::text, coalesce(max(x::text::bigint), 0) FROM (SELECT xmin AS x, count(*) AS n FROM %s%s GROUP BY xmin) g"

// DirectToken is the token of a scope holding exactly the rows this
// transaction inserted (no savepoint, so they carry its top-level xid):
// (n, n*xid, xid), as tokenSQL would compute it, without the scan.
func (x *tx) DirectToken(ctx context.Context, rows int64) (string, error) {
	if rows == 0 {
		return sqlplan.VersionToken{}.String(), nil
	}
	xid, err := x.TxVersion(ctx)
	if err != nil {
		return "", err
	}
	return sqlplan.VersionToken{N: rows, Sum: rows * xid, Max: xid}.String(), nil
}

// VersionExpr and TxVersion make the token carry across a delta
// (sqlplan.Versioned).
func (x *tx) VersionExpr(alias string) string { return alias + ".xmin::text::bigint" }

// StampVersion (sqlplan.Versioned): PostgreSQL has no function for the
// current subtransaction's id, and gives one only once it writes. A row
// written to the staging table and deleted again in the same savepoint
// shows it as xmin; the savepoint's later writes bear the same id.
func (x *tx) StampVersion(ctx context.Context, stage string) (int64, error) {
	seq := dialect{}.Quote(sqlplan.SeqCol)
	var xid int64
	err := x.tx.QueryRow(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES (-1) RETURNING xmin::text::bigint", stage, seq)).Scan(&xid)
	if err != nil {
		return 0, err
	}
	if _, err := x.tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s = -1", stage, seq)); err != nil {
		return 0, err
	}
	return xid, nil
}

func (x *tx) TxVersion(ctx context.Context) (int64, error) {
	var xid8 int64
	if err := x.tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid8); err != nil {
		return 0, err
	}
	return xid8 & 0xFFFFFFFF, nil // xmin is the 32-bit xid, without the epoch
}

// StateToken: see idem.Target.
func (x *tx) StateToken(ctx context.Context, table string, part *idem.Partition) (string, error) {
	return stateToken(ctx, x.x, table, part)
}

func stateToken(ctx context.Context, x execer, table string, part *idem.Partition) (string, error) {
	where := ""
	var args []any
	if part != nil {
		where = " WHERE " + dialect{}.Quote(part.Column) + " = $1"
		args = append(args, part.Value)
	}
	q := fmt.Sprintf(tokenSQL, dialect{}.Quote(table), where)
	var tok string
	err := x.Query(ctx, q, args, func(v []any) error {
		tok = fmt.Sprintf("x1:%v:%v:%v", v[0], v[1], v[2])
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return "", fmt.Errorf("%q: %w", table, idem.ErrNoTable)
	}
	return tok, err
}

// smallDelta is the staged row count below which the delta statements
// probe the target's primary key instead of hash-joining the whole table:
// PostgreSQL's cost model prices 10k index probes above a 1M-row scan,
// while in a warm cache they take 30 ms against 600.
const smallDelta = 100_000

func (x *tx) BeforeDelta(ctx context.Context, staged int64) error {
	if staged >= smallDelta {
		return nil
	}
	_, err := x.tx.Exec(ctx, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
	return err
}

func (x *tx) Commit(ctx context.Context) error   { return x.tx.Commit(ctx) }
func (x *tx) Rollback(ctx context.Context) error { return x.tx.Rollback(ctx) }

// ConflictColumns (sqlplan.ConflictNamer) reads the columns of a unique
// violation from its detail, `Key (a, "b c")=(…) already exists.`, where
// PostgreSQL quotes a column name as an identifier when it must. An
// expression index or an unexpected shape gives nil: the error is then
// reported as it is.
func (x *tx) ConflictColumns(err error) []string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return nil
	}
	rest, ok := strings.CutPrefix(pe.Detail, "Key (")
	if !ok {
		return nil
	}
	var cols []string
	for {
		var name string
		if strings.HasPrefix(rest, `"`) {
			// A quoted identifier: "" stands for one quote.
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '"' {
					if i+1 < len(rest) && rest[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return nil
			}
			name, rest = b.String(), rest[i+1:]
		} else {
			j := strings.IndexAny(rest, ",)")
			if j <= 0 {
				return nil
			}
			name, rest = rest[:j], rest[j:]
			if strings.ContainsAny(name, " (") {
				return nil // an expression
			}
		}
		cols = append(cols, name)
		switch {
		case strings.HasPrefix(rest, ", "):
			rest = rest[2:]
		case strings.HasPrefix(rest, ")="):
			return cols
		default:
			return nil
		}
	}
}
