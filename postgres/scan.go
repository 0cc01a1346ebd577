package postgres

import (
	"context"
	"fmt"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/sqlplan"
)

// scanBatchRows is how many rows the reader hands over at a time: big
// enough that the channel and the one string allocation per batch vanish
// in the per-row cost, small enough to keep memory flat.
const scanBatchRows = 2048

// scanBatch holds the raw text of scanBatchRows rows: all values back to
// back in buf, and per value its end offset in ends (-1 for NULL).
type scanBatch struct {
	buf  []byte
	ends []int
	rows int
}

// Scan streams a table or partition in canonical form. It replaces the
// shared row-at-a-time read because checksum, verify and diff read whole
// tables and should cost about what psql's \copy does: a reader goroutine
// copies raw values into batches while the caller canonicalises and hashes
// the previous one, and each batch becomes a single string that the values
// slice (one allocation per batch, not per value).
func (t *Target) Scan(ctx context.Context, table string, part *idem.Partition, fn func(idem.Schema, idem.Row) error) error {
	schema, err := t.Describe(ctx, table)
	if err != nil {
		return err
	}
	q, args, err := sqlplan.ScanQuery(dialect{}, table, schema, part)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan *scanBatch, 2)
	free := make(chan *scanBatch, 3)
	for range 3 {
		free <- &scanBatch{}
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(full)
		readErr <- t.readBatches(ctx, q, args, len(schema), full, free)
	}()

	row := make(idem.Row, len(schema))
	var fnErr error
	for b := range full {
		if fnErr == nil {
			fnErr = t.emit(b, schema, table, row, fn)
			if fnErr != nil {
				cancel() // stop the reader; drain what it already sent
			}
		}
		free <- b
	}
	if fnErr != nil {
		return fnErr
	}
	return <-readErr
}

func (t *Target) readBatches(ctx context.Context, q string, args []any, ncol int, full, free chan *scanBatch) error {
	rows, err := t.pool.Query(ctx, q, args...)
	if err != nil {
		return wrapErr(err)
	}
	defer rows.Close()
	var b *scanBatch
	for rows.Next() {
		if b == nil {
			select {
			case b = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			b.buf, b.ends, b.rows = b.buf[:0], b.ends[:0], 0
		}
		raw := rows.RawValues()
		if len(raw) != ncol {
			return fmt.Errorf("scan: got %d values, want %d", len(raw), ncol)
		}
		for _, v := range raw {
			if v == nil {
				b.ends = append(b.ends, -1)
				continue
			}
			b.buf = append(b.buf, v...)
			b.ends = append(b.ends, len(b.buf))
		}
		b.rows++
		if b.rows == scanBatchRows {
			full <- b
			b = nil
		}
	}
	if err := rows.Err(); err != nil {
		return wrapErr(err)
	}
	if b != nil && b.rows > 0 {
		full <- b
	}
	return nil
}

func (t *Target) emit(b *scanBatch, schema idem.Schema, table string, row idem.Row, fn func(idem.Schema, idem.Row) error) error {
	s := string(b.buf)
	k, start := 0, 0
	for range b.rows {
		for i := range row {
			end := b.ends[k]
			k++
			if end < 0 {
				row[i] = idem.Null
				continue
			}
			c, err := idem.Canon(schema[i].Type, s[start:end])
			if err != nil {
				return fmt.Errorf("table %q column %q: stored value %q %w", table, schema[i].Name, s[start:end], err)
			}
			row[i] = idem.V(c)
			start = end
		}
		if err := fn(schema, row); err != nil {
			return err
		}
	}
	return nil
}
