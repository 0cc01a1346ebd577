package sqlplan

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/idemhq/idem"
)

// A keyless load (replace, replace-partition without --key) owns its scope
// whole: its rows must end up exactly the input, as a multiset. Deleting the
// scope and writing the input back does that, but a rerun that changes a
// few rows then rewrites every row and every index entry. When the backend
// can address rows one by one (RowLocator), idem instead reads the scope's
// row hashes first, matches the input against them in the client, and
// writes only the difference: the old rows the input no longer has are
// deleted by locator, the input rows the scope lacks are inserted, and
// matched rows are not touched. The end state is the same multiset either
// way; the counts then say what changed (inserted, deleted, unchanged)
// instead of "everything deleted, everything inserted".

// RowLocator is implemented by backends that can read a scope with a
// locator for each row (PostgreSQL's ctid, SQLite's rowid) and delete rows
// by locator, in the load's transaction. Locators are only valid inside
// that transaction, which holds the scope's lock from the read to the
// delete.
type RowLocator interface {
	// ScanLocated calls fn for every row of the scope (at most limit of
	// them), in canonical form, with its locator; ok is false (and fn never
	// called) when this table has no usable locator, e.g. a partitioned
	// PostgreSQL table whose children share ctids, or a SQLite table
	// WITHOUT ROWID. The limit is in the query rather than an early return
	// from fn, because stopping a PostgreSQL COPY midway closes the
	// connection, and the transaction with it.
	ScanLocated(ctx context.Context, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(loc int64, row idem.Row) error) (ok bool, err error)
	// DeleteLocated deletes the rows at locs and says how many it deleted.
	DeleteLocated(ctx context.Context, table string, locs []int64) (int64, error)
}

const (
	// defaultDiffMaxRows bounds the scope a keyless swap compares in the
	// client (about 50 bytes a row); a bigger scope is deleted and
	// rewritten whole.
	defaultDiffMaxRows = 1_000_000
	// defaultDiffBuffer is how many bytes of changed rows a keyless swap
	// holds in memory to write them straight into the target once the
	// input is read; past it they go through a staging table instead.
	defaultDiffBuffer = 16 << 20
)

// located is the old scope as a multiset of row hashes, each entry with the
// locator of one row. Entries of equal hash are chained, so taking one for
// an input row is O(1) and what is left at the end is what to delete.
type located struct {
	head map[idem.RowHash]int32
	next []int32
	loc  []int64
	rows int64
}

func (l *located) add(h idem.RowHash, loc int64) {
	i := int32(len(l.loc))
	l.loc = append(l.loc, loc)
	j, ok := l.head[h]
	if !ok {
		j = -1
	}
	l.next = append(l.next, j)
	l.head[h] = i
	l.rows++
}

// take removes one entry of hash h; false when there is none left.
func (l *located) take(h idem.RowHash) bool {
	i, ok := l.head[h]
	if !ok {
		return false
	}
	if n := l.next[i]; n >= 0 {
		l.head[h] = n
	} else {
		delete(l.head, h)
	}
	return true
}

// leftover lists the locators of the entries no input row took.
func (l *located) leftover() []int64 {
	var out []int64
	for _, i := range l.head {
		for ; i >= 0; i = l.next[i] {
			out = append(out, l.loc[i])
		}
	}
	return out
}

func diffMaxRows(p *idem.Plan) int64 {
	if p.DiffMaxRows > 0 {
		return p.DiffMaxRows
	}
	return defaultDiffMaxRows
}

// readLocated reads the scope's row hashes and locators; nil when the
// backend cannot locate this table's rows or the scope has more rows than
// the plan's bound.
func readLocated(ctx context.Context, rl RowLocator, p *idem.Plan, cur idem.Schema) (*located, error) {
	l := &located{head: map[idem.RowHash]int32{}}
	h := idem.NewRowHasher(cur)
	max := diffMaxRows(p)
	ok, err := rl.ScanLocated(ctx, p.Table, cur, p.Partition, max+1, func(loc int64, row idem.Row) error {
		l.add(h.Hash(row), loc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", scopeLabel(p), err)
	}
	if !ok || l.rows > max {
		return nil, nil
	}
	return l, nil
}

// diffRows passes on the input rows the old scope does not hold, taking a
// matching old entry for each row it holds back.
type diffRows struct {
	in        *idem.Input
	old       *located
	rowsIn    int64
	unchanged int64
	// Rows held in memory before the decision to write directly or stage.
	buf    []idem.Row
	bufPos []idem.Pos
	bytes  int
	i      int // next buffered row to replay
	pos    idem.Pos
}

func (d *diffRows) Columns() idem.Schema { return d.in.Columns() }
func (d *diffRows) Pos() idem.Pos        { return d.pos }

// next is the next input row the scope lacks.
func (d *diffRows) next() (idem.Row, error) {
	for {
		row, err := d.in.Next()
		if err != nil {
			return nil, err
		}
		d.rowsIn++
		if d.old.take(d.in.LastHash()) {
			d.unchanged++
			continue
		}
		d.pos = d.in.Pos()
		return row, nil
	}
}

// fill holds changed rows until the input ends (true) or they pass limit
// bytes (false). Held rows are copied out of the input's batches, which
// would otherwise stay alive for one row each.
func (d *diffRows) fill(limit int) (bool, error) {
	for d.bytes < limit {
		row, err := d.next()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		c := make(idem.Row, len(row))
		for i, v := range row {
			c[i] = idem.Value{S: strings.Clone(v.S), Null: v.Null}
			d.bytes += len(v.S) + 24
		}
		d.buf = append(d.buf, c)
		d.bufPos = append(d.bufPos, d.pos)
	}
	return false, nil
}

// Next replays the held rows, then goes on with the input.
func (d *diffRows) Next() (idem.Row, error) {
	if d.i < len(d.buf) {
		d.i++
		d.pos = d.bufPos[d.i-1]
		return d.buf[d.i-1], nil
	}
	d.buf, d.bufPos = nil, nil
	return d.next()
}

// swapDiff is what diffSwap did.
type swapDiff struct {
	st     *Stage
	counts Counts
	rowsIn int64
}

// diffSwap makes the scope hold exactly the input, writing only the rows
// that differ (see RowLocator). It returns nil, with nothing written, when
// the scope cannot be compared this way; the caller then swaps it whole.
func (p *Planner) diffSwap(ctx context.Context, rl RowLocator, tx Tx, cur idem.Schema, in *idem.Input) (*swapDiff, error) {
	plan := p.Plan
	old, err := readLocated(ctx, rl, plan, cur)
	if err != nil || old == nil {
		return nil, err
	}
	d := &diffRows{in: in, old: old}
	limit := plan.DiffBuffer
	if limit <= 0 {
		limit = defaultDiffBuffer
	}
	// An empty scope has nothing to delete: stream straight in.
	ended := old.rows == 0
	if !ended {
		if ended, err = d.fill(limit); err != nil {
			return nil, err
		}
	}
	var deleted int64
	deleteLeft := func() error {
		locs := old.leftover()
		if len(locs) == 0 {
			return nil
		}
		n, err := rl.DeleteLocated(ctx, plan.Table, locs)
		if err != nil {
			return fmt.Errorf("delete replaced rows: %w", err)
		}
		if n != int64(len(locs)) {
			// Only a writer outside idem's lock can have moved them; a
			// rerun (exit 1, retryable) reads the scope afresh.
			return fmt.Errorf("%s changed during the load (%d of %d rows to replace were gone); rerun", scopeLabel(plan), len(locs)-int(n), len(locs))
		}
		deleted = n
		return nil
	}
	// With the whole input read, the rows to delete are known and go
	// first, so the new rows can go straight into the target without
	// meeting the old versions of their keys. Otherwise the new rows are
	// staged while the rest of the input streams, and inserted after.
	if ended {
		if err := deleteLeft(); err != nil {
			return nil, err
		}
	}
	st := &Stage{Direct: true}
	if !ended || len(d.buf) > 0 || old.rows == 0 {
		if st, err = tx.Stage(ctx, p, d, ended); err != nil {
			return nil, err
		}
	}
	if !ended {
		if err := deleteLeft(); err != nil {
			return nil, err
		}
	}
	if !st.Direct {
		if _, err := p.insertStaged(ctx, tx, st); err != nil {
			return nil, err
		}
	}
	return &swapDiff{st: st, rowsIn: d.rowsIn,
		counts: Counts{Inserted: st.Rows, Deleted: deleted, Unchanged: d.unchanged, Replaced: true}}, nil
}
