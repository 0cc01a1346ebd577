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
	// ver is the row's version when the backend is Versioned, else 0.
	ScanLocated(ctx context.Context, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(loc, ver int64, row idem.Row) error) (ok bool, err error)
	// DeleteLocated deletes the rows at locs and says how many it deleted.
	DeleteLocated(ctx context.Context, table string, locs []int64) (int64, error)
}

const (
	// defaultDiffMaxRows bounds the scope a keyless swap compares in the
	// client (about 37 bytes a row, see located); a bigger scope is
	// deleted and rewritten whole.
	defaultDiffMaxRows = 1_000_000
	// defaultDiffBuffer is how many bytes of changed rows a keyless swap
	// holds in memory to write them straight into the target once the
	// input is read; past it they go through a staging table instead.
	defaultDiffBuffer = 16 << 20
)

// located is the old scope as a multiset of row hashes, each entry with the
// locator of one row, in the order the scan returned them. A rerun's input
// mostly comes in that order (the previous load wrote its rows in input
// order), so the entry after the last one taken is tried first; otherwise
// an open-addressing index over the distinct hashes, built on the first
// miss, leads to a chain of the entries with that hash. Flat int32 arrays
// rather than a map: about 37 bytes a row against over 100 MB of map and
// garbage for a million rows.
type located struct {
	e      []locEntry
	ver    []uint32 // each entry's row version (Versioned backends)
	all    versionAgg
	taken  []bool
	cursor int
	// The index: slots[h.Lo & mask] onwards (linear probing) holds, for
	// each distinct hash, the first entry of its chain not known to be
	// taken; next chains entries of equal hash in scan order.
	slots []int32
	next  []int32
	mask  uint64
	rows  int64
}

type locEntry struct {
	h   idem.RowHash
	loc int64
}

func (l *located) add(h idem.RowHash, loc, ver int64) {
	l.e = append(l.e, locEntry{h, loc})
	l.ver = append(l.ver, uint32(ver))
	l.all.add(versionAgg{1, ver, ver})
	l.rows++
}

// seal ends the adds.
func (l *located) seal() { l.taken = make([]bool, len(l.e)) }

// slot is where h's chain is, or the empty slot where it would go. Row
// hashes are cryptographic, so their low bits spread evenly.
func (l *located) slot(h idem.RowHash) uint64 {
	for i := h.Lo & l.mask; ; i = (i + 1) & l.mask {
		if s := l.slots[i]; s < 0 || l.e[s].h == h {
			return i
		}
	}
}

func (l *located) index() {
	size := 2
	for size < 2*len(l.e) {
		size <<= 1
	}
	l.mask = uint64(size - 1)
	l.slots = make([]int32, size)
	for i := range l.slots {
		l.slots[i] = -1
	}
	l.next = make([]int32, len(l.e))
	for i := len(l.e) - 1; i >= 0; i-- { // backwards, so chains run in scan order
		at := l.slot(l.e[i].h)
		l.next[i] = l.slots[at]
		l.slots[at] = int32(i)
	}
}

// take marks one entry of hash h taken; false when none is left.
func (l *located) take(h idem.RowHash) bool {
	if c := l.cursor; c < len(l.e) && !l.taken[c] && l.e[c].h == h {
		l.taken[c] = true
		l.cursor++
		return true
	}
	if l.slots == nil {
		l.index()
	}
	at := l.slot(h)
	s := l.slots[at]
	if s < 0 {
		return false
	}
	// Skip what the cursor took; a slot is never emptied (probing for
	// other hashes passes through it), it keeps its chain's last entry.
	for l.taken[s] {
		if l.next[s] < 0 {
			l.slots[at] = s
			return false
		}
		s = l.next[s]
	}
	l.taken[s] = true
	l.slots[at] = s
	l.cursor = int(s) + 1
	return true
}

// leftover lists the locators of the entries no input row took, and sums
// their versions.
func (l *located) leftover() ([]int64, versionAgg) {
	var out []int64
	var agg versionAgg
	for i, t := range l.taken {
		if !t {
			out = append(out, l.e[i].loc)
			v := int64(l.ver[i])
			agg.add(versionAgg{1, v, v})
		}
	}
	return out, agg
}

func diffMaxRows(p *idem.Plan) int64 {
	if p.DiffMaxRows > 0 {
		return p.DiffMaxRows
	}
	return defaultDiffMaxRows
}

// readLocated reads the scope's row hashes and locators; nil when the
// backend cannot locate this table's rows or the scope has more rows than
// the plan's bound. expect, when positive, is how many rows the ledger last
// saw there: the entries are allocated once.
func readLocated(ctx context.Context, rl RowLocator, p *idem.Plan, cur idem.Schema, expect int64) (*located, error) {
	bound := diffMaxRows(p)
	n := min(max(expect, 0)+64, bound+1)
	l := &located{e: make([]locEntry, 0, n), ver: make([]uint32, 0, n)}
	h := idem.NewRowHasher(cur)
	ok, err := rl.ScanLocated(ctx, p.Table, cur, p.Partition, bound+1, func(loc, ver int64, row idem.Row) error {
		l.add(h.Hash(row), loc, ver)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", scopeLabel(p), err)
	}
	if !ok || l.rows > bound {
		return nil, nil
	}
	l.seal()
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
	// carry, when set, states the scope's token after the swap from the
	// versions the located scan read, without scanning again.
	carry func(Counts) (string, bool, error)
}

// diffSwap makes the scope hold exactly the input, writing only the rows
// that differ (see RowLocator). It returns nil, with nothing written, when
// the scope cannot be compared this way; the caller then swaps it whole.
func (p *Planner) diffSwap(ctx context.Context, rl RowLocator, tx Tx, cur idem.Schema, in *idem.Input, expect int64) (*swapDiff, error) {
	plan := p.Plan
	old, err := readLocated(ctx, rl, plan, cur, expect)
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
	var gone versionAgg
	deleteLeft := func() error {
		var locs []int64
		locs, gone = old.leftover()
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
	res := &swapDiff{st: st, rowsIn: d.rowsIn,
		counts: Counts{Inserted: st.Rows, Deleted: deleted, Unchanged: d.unchanged, Replaced: true}}
	// The token carries when the new rows carry this transaction's own
	// version: written straight in, not in insertStaged's savepoint.
	if v, ok := tx.(Versioned); ok && st.Direct {
		before := VersionToken{N: old.all.n, Sum: old.all.sum, Max: old.all.max}
		res.carry = func(c Counts) (string, bool, error) {
			return carryToken(ctx, v, before, gone, c, 0, st.Rows, deleted)
		}
	}
	return res, nil
}
