package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/sqlplan"
	"github.com/jackc/pgx/v5/pgconn"
)

// scanBatchBytes is how much COPY text the reader hands over at a time: big
// enough that the channel and the one string allocation per batch vanish in
// the per-row cost, small enough to keep memory flat.
const scanBatchBytes = 256 << 10

// Scan streams a table or partition in canonical form. It replaces the
// shared row-at-a-time read because checksum, verify and diff read whole
// tables and should cost about what psql's \copy does: the rows come by
// COPY TO STDOUT (the server's cheapest way out), a reader goroutine only
// collects the raw text into batches, and the caller parses, canonicalises
// and hashes the previous batch meanwhile. Each batch becomes one string
// that the values slice, so there is no allocation per value.
func (t *Target) Scan(ctx context.Context, table string, part *idem.Partition, fn func(idem.Schema, idem.Row) error) error {
	schema, err := t.Describe(ctx, table)
	if err != nil {
		return err
	}
	q, err := copyOutSQL(table, schema, part, "", 0)
	if err != nil {
		return err
	}
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return wrapErr(err)
	}
	defer conn.Release()
	return copyScan(ctx, conn.Conn().PgConn(), q, &textRows{schema: schema, table: table, row: make(idem.Row, len(schema)), fn: fn})
}

// copyScan runs the COPY TO STDOUT q on conn: a reader goroutine collects
// the raw text into batches while this one parses them into p.
func copyScan(ctx context.Context, conn *pgconn.PgConn, q string, p *textRows) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan []byte, 2)
	free := make(chan []byte, 3)
	for range 3 {
		free <- make([]byte, 0, scanBatchBytes+64<<10)
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(full)
		readErr <- copyOut(ctx, conn, q, full, free)
	}()

	var fnErr error
	for b := range full {
		if fnErr == nil {
			if fnErr = p.batch(b); fnErr != nil {
				cancel() // stop the reader; drain what it already sent
			}
		}
		free <- b[:0]
	}
	if fnErr != nil {
		return fnErr
	}
	return <-readErr
}

// copyOutSQL selects every column as text. COPY takes no bind parameters,
// so the partition value goes in as a literal: it is canonical for its type
// first (digits, dates and timestamps carry no quote), and text is written
// as an E-prefixed string with backslashes and quotes escaped, safe
// whatever standard_conforming_strings says; canonical text has no NUL.
// lead, when not empty, is an expression read before the columns (the
// row's ctid and xmin for a located scan); limit, when positive, bounds the
// rows.
func copyOutSQL(table string, schema idem.Schema, part *idem.Partition, lead string, limit int64) (string, error) {
	d := dialect{}
	cols := make([]string, 0, len(schema)+1)
	if lead != "" {
		cols = append(cols, lead)
	}
	for _, c := range schema {
		cols = append(cols, d.Quote(c.Name))
	}
	if part == nil && lead == "" && limit <= 0 {
		return fmt.Sprintf("COPY %s (%s) TO STDOUT", d.Quote(table), strings.Join(cols, ", ")), nil
	}
	sel := fmt.Sprintf("SELECT %s FROM %s", strings.Join(cols, ", "), d.Quote(table))
	if part != nil {
		_, v, err := sqlplan.PartitionValue(table, schema, part)
		if err != nil {
			return "", err
		}
		// An untyped literal takes the column's type, as a bound value would.
		lit := "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
		sel += fmt.Sprintf(" WHERE %s = %s", d.Quote(part.Column), lit)
	}
	if limit > 0 {
		sel += " LIMIT " + strconv.FormatInt(limit, 10)
	}
	return "COPY (" + sel + ") TO STDOUT", nil
}

// batchWriter receives COPY data (whole rows per message) and passes on
// batches of about scanBatchBytes.
type batchWriter struct {
	ctx  context.Context
	cur  []byte
	full chan<- []byte
	free <-chan []byte
}

func (w *batchWriter) Write(p []byte) (int, error) {
	if w.cur == nil {
		select {
		case w.cur = <-w.free:
		case <-w.ctx.Done():
			return 0, w.ctx.Err()
		}
	}
	w.cur = append(w.cur, p...)
	if len(w.cur) >= scanBatchBytes && w.cur[len(w.cur)-1] == '\n' {
		w.full <- w.cur
		w.cur = nil
	}
	return len(p), nil
}

func copyOut(ctx context.Context, conn *pgconn.PgConn, q string, full chan<- []byte, free <-chan []byte) error {
	w := &batchWriter{ctx: ctx, full: full, free: free}
	if _, err := conn.CopyTo(ctx, w, q); err != nil {
		return wrapErr(err)
	}
	if len(w.cur) > 0 {
		full <- w.cur
	}
	return nil
}

// textRows parses COPY's text format: columns separated by tabs, rows by
// newlines, \N for NULL, and backslash escapes for the characters that
// would break that framing.
type textRows struct {
	schema idem.Schema
	table  string
	row    idem.Row
	fn     func(idem.Schema, idem.Row) error
	unesc  []byte
	// locate, when set, replaces fn for a located scan: each line starts
	// with the row's ctid and xmin.
	locate func(loc, ver int64, row idem.Row) error
}

var errCopyFormat = errors.New("malformed COPY data from the server")

func (p *textRows) batch(b []byte) error {
	s := string(b) // one allocation per batch; values are slices of it
	for len(s) > 0 {
		nl := strings.IndexByte(s, '\n')
		if nl < 0 {
			return errCopyFormat
		}
		line := s[:nl]
		s = s[nl+1:]
		var loc, ver int64
		if p.locate != nil {
			ctid, rest, ok1 := strings.Cut(line, "\t")
			xmin, rest, ok2 := strings.Cut(rest, "\t")
			var ok3 bool
			loc, ok3 = parseCtid(ctid)
			v, err := strconv.ParseUint(xmin, 10, 32)
			if !ok1 || !ok2 || !ok3 || err != nil {
				return errCopyFormat
			}
			ver, line = int64(v), rest
		}
		for i := range p.row {
			var field string
			if i == len(p.row)-1 {
				field, line = line, ""
			} else {
				tab := strings.IndexByte(line, '\t')
				if tab < 0 {
					return errCopyFormat
				}
				field, line = line[:tab], line[tab+1:]
			}
			if field == `\N` {
				p.row[i] = idem.Null
				continue
			}
			if strings.IndexByte(field, '\\') >= 0 {
				field = p.unescape(field)
			}
			c, err := idem.Canon(p.schema[i].Type, field)
			if err != nil {
				return fmt.Errorf("table %q column %q: stored value %q %w", p.table, p.schema[i].Name, field, err)
			}
			p.row[i] = idem.V(c)
		}
		var err error
		if p.locate != nil {
			err = p.locate(loc, ver, p.row)
		} else {
			err = p.fn(p.schema, p.row)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unescape undoes COPY TO's escapes (it writes only \\, \b, \f, \n, \r,
// \t and \v).
func (p *textRows) unescape(f string) string {
	u := p.unesc[:0]
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' || i+1 == len(f) {
			u = append(u, c)
			continue
		}
		i++
		switch f[i] {
		case 'b':
			u = append(u, '\b')
		case 'f':
			u = append(u, '\f')
		case 'n':
			u = append(u, '\n')
		case 'r':
			u = append(u, '\r')
		case 't':
			u = append(u, '\t')
		case 'v':
			u = append(u, '\v')
		default:
			u = append(u, f[i])
		}
	}
	p.unesc = u
	return string(u)
}

// parseCtid reads a ctid's text form "(block,offset)" as block<<16|offset:
// an offset is at most MaxHeapTuplesPerPage (a few hundred), a block
// number 32 bits.
func parseCtid(s string) (int64, bool) {
	if len(s) < 5 || s[0] != '(' || s[len(s)-1] != ')' {
		return 0, false
	}
	b, o, ok := strings.Cut(s[1:len(s)-1], ",")
	if !ok {
		return 0, false
	}
	block, err1 := strconv.ParseUint(b, 10, 32)
	off, err2 := strconv.ParseUint(o, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return int64(block)<<16 | int64(off), true
}

// formatCtid is parseCtid's inverse.
func formatCtid(loc int64) string {
	return "(" + strconv.FormatInt(loc>>16, 10) + "," + strconv.FormatInt(loc&0xffff, 10) + ")"
}

// ScanLocated (sqlplan.RowLocator) reads the scope in the load's
// transaction with each row's ctid, and its xmin as the version
// (sqlplan.Versioned: what the state token sums). A ctid names a row only within one
// heap, so tables with partitions or inheritance children, whose rows come
// from several heaps, are not located.
func (x *tx) ScanLocated(ctx context.Context, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(loc, ver int64, row idem.Row) error) (bool, error) {
	var plain bool
	err := x.tx.QueryRow(ctx, "SELECT c.relkind = 'r' AND NOT c.relhassubclass FROM pg_class c WHERE c.oid = to_regclass($1)",
		dialect{}.Quote(table)).Scan(&plain)
	if err != nil || !plain {
		return false, err
	}
	q, err := copyOutSQL(table, schema, part, "ctid, xmin", limit)
	if err != nil {
		return false, err
	}
	p := &textRows{schema: schema, table: table, row: make(idem.Row, len(schema)), locate: fn}
	return true, copyScan(ctx, x.tx.Conn().PgConn(), q, p)
}

// locBatch is how many ctids one DELETE names: one array parameter.
const locBatch = 100_000

// DeleteLocated (sqlplan.RowLocator) deletes rows by ctid, through a TID
// scan of a bound array.
func (x *tx) DeleteLocated(ctx context.Context, table string, locs []int64) (int64, error) {
	q := "DELETE FROM " + dialect{}.Quote(table) + " WHERE ctid = ANY($1::text[]::tid[])"
	var total int64
	for len(locs) > 0 {
		n := min(len(locs), locBatch)
		tids := make([]string, n)
		for i, l := range locs[:n] {
			tids[i] = formatCtid(l)
		}
		c, err := x.tx.Exec(ctx, q, tids)
		if err != nil {
			return total, err
		}
		total += c.RowsAffected()
		locs = locs[n:]
	}
	return total, nil
}
