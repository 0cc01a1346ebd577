package postgres

import (
	"context"
	"fmt"
	"io"

	"github.com/idemhq/idem"
	"github.com/jackc/pgx/v5"
)

// Query runs a SELECT and yields its rows as raw records. Results come in
// PostgreSQL's text format, which Canon reads for every type idem knows.
func (t *Target) Query(ctx context.Context, query string) (idem.RecordReader, error) {
	rows, err := t.pool.Query(ctx, query, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return nil, idem.BadInput("query: %v", err)
	}
	fds := rows.FieldDescriptions()
	cols := make([]string, len(fds))
	for i, f := range fds {
		cols[i] = f.Name
	}
	return &queryReader{rows: rows, cols: cols, rec: make([]idem.Value, len(cols))}, nil
}

type queryReader struct {
	rows pgx.Rows
	cols []string
	rec  []idem.Value
	n    int64
}

func (q *queryReader) Columns() []string { return q.cols }
func (q *queryReader) Close() error      { q.rows.Close(); return nil }

func (q *queryReader) Read() ([]idem.Value, idem.Pos, error) {
	if !q.rows.Next() {
		if err := q.rows.Err(); err != nil {
			return nil, idem.Pos{}, fmt.Errorf("query: %w", err)
		}
		return nil, idem.Pos{}, io.EOF
	}
	q.n++
	for i, raw := range q.rows.RawValues() {
		if raw == nil {
			q.rec[i] = idem.Null
		} else {
			q.rec[i] = idem.V(string(raw))
		}
	}
	return q.rec, idem.Pos{File: "query", Line: q.n}, nil
}
