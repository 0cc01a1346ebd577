package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/idemhq/idem"
)

// Query runs a SELECT and yields its rows as raw records, for
// `idem load --from sqlite:… --query …`.
func (t *Target) Query(ctx context.Context, query string) (idem.RecordReader, error) {
	rows, err := t.db.QueryContext(ctx, query)
	if err != nil {
		return nil, idem.BadInput("query: %v", err)
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return nil, err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		rows.Close()
		return nil, err
	}
	// The driver turns DATE/TIMESTAMP columns into time.Time; the declared
	// type says which text form gives the value back unchanged.
	isDate := make([]bool, len(cols))
	for i, ct := range types {
		isDate[i] = typeOf(ct.DatabaseTypeName()) == idem.TypeDate
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return &queryReader{rows: rows, cols: cols, vals: vals, ptrs: ptrs, isDate: isDate, rec: make([]idem.Value, len(cols))}, nil
}

type queryReader struct {
	rows   *sql.Rows
	cols   []string
	vals   []any
	ptrs   []any
	isDate []bool
	rec    []idem.Value
	n      int64
}

func (q *queryReader) Columns() []string { return q.cols }
func (q *queryReader) Close() error      { return q.rows.Close() }

func (q *queryReader) Read() ([]idem.Value, idem.Pos, error) {
	if !q.rows.Next() {
		if err := q.rows.Err(); err != nil {
			return nil, idem.Pos{}, fmt.Errorf("query: %w", err)
		}
		return nil, idem.Pos{}, io.EOF
	}
	q.n++
	if err := q.rows.Scan(q.ptrs...); err != nil {
		return nil, idem.Pos{}, err
	}
	for i, v := range q.vals {
		switch x := v.(type) {
		case nil:
			q.rec[i] = idem.Null
		case int64:
			q.rec[i] = idem.V(strconv.FormatInt(x, 10))
		case float64:
			q.rec[i] = idem.V(strconv.FormatFloat(x, 'f', -1, 64))
		case string:
			q.rec[i] = idem.V(x)
		case []byte:
			q.rec[i] = idem.V(string(x))
		case bool:
			q.rec[i] = idem.V(strconv.FormatBool(x))
		case time.Time:
			if q.isDate[i] {
				q.rec[i] = idem.V(x.UTC().Format("2006-01-02"))
			} else {
				q.rec[i] = idem.V(idem.FormatTimestamp(x))
			}
		default:
			q.rec[i] = idem.V(fmt.Sprint(x))
		}
	}
	// Query rows have no file line; the row number stands in for it.
	return q.rec, idem.Pos{File: "query", Line: q.n}, nil
}
