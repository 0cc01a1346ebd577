// Package sqlplan holds what every SQL target shares: the set-based
// statements of each write strategy, run against a staging table the
// backend has filled, and the run ledger. A backend supplies a Dialect and
// an Execer; the strategy logic is written once here so that SQLite,
// PostgreSQL and later MySQL behave the same way by construction.
package sqlplan

import (
	"context"
	"fmt"
	"strings"

	"github.com/idemhq/idem"
)

// Dialect is what differs between SQL backends in the statements below.
type Dialect interface {
	// Quote makes an identifier safe whatever it contains.
	Quote(name string) string
	// Placeholder is the n-th (1-based) bind parameter.
	Placeholder(n int) string
	// NotDistinct is a NULL-safe equality of two expressions.
	NotDistinct(a, b string) string
	// TypeName is the column type idem creates for t.
	TypeName(t idem.Type) string
	// Bind converts a canonical value to the driver value for type t.
	Bind(t idem.Type, v idem.Value) any
}

// Execer runs statements inside the load's transaction.
type Execer interface {
	// Exec returns the number of rows affected.
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	// Query calls fn for each result row with the row's values.
	Query(ctx context.Context, sql string, args []any, fn func(vals []any) error) error
}

// Counts are what a strategy did.
type Counts struct {
	Inserted, Updated, Deleted, Unchanged, Skipped int64
	// Replaced is true when the strategy's scope (table or partition) now
	// holds exactly the staged rows, so the output fingerprint equals the
	// input's.
	Replaced bool
}

// Staging columns beside the data: the row's ordinal in the input (which
// decides first/last for --dedupe) and its source line (for errors).
const (
	SeqCol  = "_idem_seq"
	LineCol = "_idem_line"
)

// Stage describes a filled staging table.
type Stage struct {
	Name string // already quoted if it needs to be
	Rows int64
	// Direct is true when the backend wrote the rows straight into the
	// target (allowed only into an empty scope): nothing is left to apply.
	Direct bool
	// Files maps row ordinals back to input files: Files[i] covers the
	// ordinals from its FirstSeq up to the next entry's.
	Files []FileSpan
}

// FileSpan is where one input file's rows start.
type FileSpan struct {
	FirstSeq int64
	File     string
}

// Track records the file of row seq; call it for every staged row.
func (st *Stage) Track(seq int64, file string) {
	if n := len(st.Files); n == 0 || st.Files[n-1].File != file {
		st.Files = append(st.Files, FileSpan{seq, file})
	}
}

func (st *Stage) fileOf(seq int64) string {
	f := ""
	for _, s := range st.Files {
		if s.FirstSeq > seq {
			break
		}
		f = s.File
	}
	return f
}

func (p *Planner) cols(prefix string, cs idem.Schema) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = prefix + p.D.Quote(c.Name)
	}
	return strings.Join(parts, ", ")
}

// Planner builds and runs the statements for one plan.
type Planner struct {
	D    Dialect
	X    Execer
	Plan *idem.Plan
	// Delta is set when the rows staged are only the new and changed ones
	// the row digest let through: the delta statements then probe the
	// target by key, so a backend need not gather statistics on them.
	Delta bool
}

func (p *Planner) table() string { return p.D.Quote(p.Plan.Table) }

// CreateTable creates the target with a primary key on --key.
func (p *Planner) CreateTable(ctx context.Context, ifNotExists bool) error {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	if ifNotExists {
		b.WriteString("IF NOT EXISTS ")
	}
	b.WriteString(p.table())
	b.WriteString(" (")
	for i, c := range p.Plan.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.D.Quote(c.Name) + " " + p.D.TypeName(c.Type))
	}
	if len(p.Plan.Key) > 0 {
		b.WriteString(", PRIMARY KEY (")
		for i, k := range p.Plan.Key {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(p.D.Quote(k))
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	_, err := p.X.Exec(ctx, b.String())
	return err
}

// AddColumns applies --evolve.
func (p *Planner) AddColumns(ctx context.Context, cols idem.Schema) error {
	for _, c := range cols {
		q := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", p.table(), p.D.Quote(c.Name), p.D.TypeName(c.Type))
		if _, err := p.X.Exec(ctx, q); err != nil {
			return fmt.Errorf("add column %q: %w", c.Name, err)
		}
	}
	return nil
}

// StagingColumns is the staging table's column list: the plan's columns and
// the two bookkeeping columns.
func (p *Planner) StagingDDL(name, prefix, suffix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (", prefix, name)
	for _, c := range p.Plan.Columns {
		b.WriteString(p.D.Quote(c.Name) + " " + p.D.TypeName(c.Type) + ", ")
	}
	fmt.Fprintf(&b, "%s BIGINT, %s BIGINT)%s", SeqCol, LineCol, suffix)
	return b.String()
}

func (p *Planner) keyMatch(a, b string) string {
	parts := make([]string, len(p.Plan.Key))
	for i, k := range p.Plan.Key {
		q := p.D.Quote(k)
		parts[i] = a + "." + q + " = " + b + "." + q
	}
	return strings.Join(parts, " AND ")
}

func (p *Planner) keyList(prefix string) string {
	parts := make([]string, len(p.Plan.Key))
	for i, k := range p.Plan.Key {
		parts[i] = prefix + p.D.Quote(k)
	}
	return strings.Join(parts, ", ")
}

// scope is the predicate and arguments selecting the rows a load owns.
func (p *Planner) scope(alias string) (string, []any) {
	part := p.Plan.Partition
	if part == nil {
		return "", nil
	}
	c := p.Plan.Columns[p.Plan.Columns.Index(part.Column)]
	col := p.D.Quote(part.Column)
	if alias != "" {
		col = alias + "." + col
	}
	return col + " = " + p.D.Placeholder(1), []any{p.D.Bind(c.Type, idem.V(part.Value))}
}

// Dedupe enforces --dedupe on the staging table and returns how many input
// rows it dropped.
func (p *Planner) Dedupe(ctx context.Context, st *Stage) (int64, error) {
	if len(p.Plan.Key) == 0 {
		return 0, nil
	}
	s := st.Name
	switch p.Plan.Dedupe {
	case idem.DedupeFirst, idem.DedupeLast:
		agg := "min"
		if p.Plan.Dedupe == idem.DedupeLast {
			agg = "max"
		}
		q := fmt.Sprintf("DELETE FROM %s WHERE %s NOT IN (SELECT %s(%s) FROM %s GROUP BY %s)", s, SeqCol, agg, SeqCol, s, p.keyList(""))
		return p.X.Exec(ctx, q)
	}
	// The first duplicate in input order: the pair whose second row comes
	// earliest.
	q := fmt.Sprintf("SELECT min(%s), min(%s), max(%s), max(%s), %s FROM %s GROUP BY %s HAVING count(*) > 1 ORDER BY 3 LIMIT 1",
		SeqCol, LineCol, SeqCol, LineCol, p.keyList(""), s, p.keyList(""))
	var seq1, line1, seq2, line2 int64
	var key []string
	found := false
	err := p.X.Query(ctx, q, nil, func(v []any) error {
		found = true
		seq1, line1, seq2, line2 = toInt(v[0]), toInt(v[1]), toInt(v[2]), toInt(v[3])
		for _, k := range v[4:] {
			key = append(key, fmt.Sprint(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if found {
		// min/max of the line are those of the two rows unless a key
		// repeats across files; the message stays right about files.
		return 0, &idem.InputError{File: st.fileOf(seq2), Line: line2,
			Msg: fmt.Sprintf("duplicate key (%s)=(%s): the same key is at %s:%d (use --dedupe first|last to keep one)",
				strings.Join(p.Plan.Key, ", "), strings.Join(key, ", "), st.fileOf(seq1), line1)}
	}
	return 0, nil
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

// Apply runs a keyed strategy's statements from the staging table into the
// target (keyless loads swap their scope in ApplyLoad), after Dedupe has
// dropped skipped duplicate rows from it. emptyScope says no existing row
// can match a staged one, which lets every strategy degenerate to one
// INSERT.
func (p *Planner) Apply(ctx context.Context, st *Stage, emptyScope bool, skipped int64) (Counts, error) {
	var c Counts
	var err error
	c.Skipped = skipped
	staged := st.Rows - skipped
	t, s := p.table(), st.Name
	if emptyScope {
		c.Inserted, err = p.insertAll(ctx, s)
		c.Replaced = true
		return c, err
	}
	if p.Plan.Partition != nil && len(p.Plan.Key) > 0 {
		// The same rule as ApplyDelta's: the updates below match keys
		// table-wide and would pull a row out of its own partition, which
		// that partition's next load puts back.
		if n, err := p.keysElsewhere(ctx, s); err != nil || n > 0 {
			if err == nil {
				err = p.elsewhere(n)
			}
			return c, err
		}
	}
	strat := p.Plan.Strategy
	if strat == idem.Merge || strat == idem.Replace || strat == idem.ReplacePartition {
		where, args := p.scope("t")
		if where != "" {
			where += " AND "
		}
		q := fmt.Sprintf("DELETE FROM %s AS t WHERE %sNOT EXISTS (SELECT 1 FROM %s AS s WHERE %s)", t, where, s, p.keyMatch("s", "t"))
		if c.Deleted, err = p.X.Exec(ctx, q, args...); err != nil {
			return c, err
		}
		c.Replaced = true
	}
	if strat == idem.InsertMissing {
		if c.Unchanged, err = p.identical(ctx, s); err != nil {
			return c, err
		}
	} else if c.Updated, err = p.update(ctx, s); err != nil {
		return c, err
	}
	if c.Inserted, err = p.insertNew(ctx, s); err != nil {
		return c, err
	}
	if strat == idem.InsertMissing {
		c.Skipped += staged - c.Inserted - c.Unchanged
	} else {
		c.Unchanged = staged - c.Inserted - c.Updated
	}
	return c, nil
}

// ApplyDelta applies a staging table that holds only new and changed rows
// (the row digest found the rest unchanged), deleting gone keys by value.
func (p *Planner) ApplyDelta(ctx context.Context, st *Stage, gone [][]byte, changed, added int64) (Counts, error) {
	var c Counts
	var err error
	switch p.Plan.Strategy {
	case idem.Merge, idem.Replace, idem.ReplacePartition:
		if c.Deleted, err = p.deleteKeys(ctx, gone); err != nil {
			return c, err
		}
		c.Replaced = true
	}
	// The digest says which staged rows exist (changed) and which do not
	// (added); a statement with nothing to do is not sent.
	if p.Plan.Strategy != idem.InsertMissing && changed > 0 {
		if c.Updated, err = p.update(ctx, st.Name); err != nil {
			return c, err
		}
	}
	if added > 0 {
		if c.Inserted, err = p.insertNew(ctx, st.Name); err != nil {
			return c, err
		}
		// The digest is the partition's: a key it lacks is new to the
		// partition, and insertNew skips one the table holds elsewhere.
		// Such a row would be neither written nor moved, while this
		// partition's digest recorded it as loaded: lost in silence. A key
		// belongs to one partition, so the load is refused (and rolled back).
		if n := added - c.Inserted; n > 0 && p.Plan.Partition != nil {
			return c, p.elsewhere(n)
		}
	}
	return c, nil
}

// keysElsewhere counts the table's rows outside the load's partition whose
// key is staged.
func (p *Planner) keysElsewhere(ctx context.Context, s string) (int64, error) {
	where, args := p.scope("t")
	var n int64
	q := fmt.Sprintf("SELECT count(*) FROM %s AS t WHERE NOT (%s) AND EXISTS (SELECT 1 FROM %s AS s WHERE %s)",
		p.table(), where, s, p.keyMatch("s", "t"))
	err := p.X.Query(ctx, q, args, func(v []any) error { n = toInt(v[0]); return nil })
	return n, err
}

func (p *Planner) elsewhere(n int64) error {
	return idem.BadInput("%d key(s) of the input are already in %q outside partition %s; with --key, a key must stay in one partition (load the rows into the partition that holds them, or delete them there first)",
		n, p.Plan.Table, p.Plan.Partition)
}

func (p *Planner) nonKeyCols() []string {
	var out []string
	for _, col := range p.Plan.Columns {
		if !isKey(p.Plan.Key, col.Name) {
			out = append(out, p.D.Quote(col.Name))
		}
	}
	return out
}

func (p *Planner) sameRow(a, b string) string {
	var same []string
	for _, q := range p.nonKeyCols() {
		same = append(same, p.D.NotDistinct(a+"."+q, b+"."+q))
	}
	if len(same) == 0 {
		return "1 = 1"
	}
	return strings.Join(same, " AND ")
}

// update writes staged rows whose key exists and whose values differ.
func (p *Planner) update(ctx context.Context, s string) (int64, error) {
	var set []string
	for _, q := range p.nonKeyCols() {
		set = append(set, q+" = s."+q)
	}
	if len(set) == 0 {
		return 0, nil
	}
	q := fmt.Sprintf("UPDATE %s AS t SET %s FROM %s AS s WHERE %s AND NOT (%s)",
		p.table(), strings.Join(set, ", "), s, p.keyMatch("t", "s"), p.sameRow("t", "s"))
	return p.X.Exec(ctx, q)
}

// insertAll copies every staged row into the target.
func (p *Planner) insertAll(ctx context.Context, s string) (int64, error) {
	cols := p.cols("", p.Plan.Columns)
	return p.X.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", p.table(), cols, cols, s))
}

// insertNew inserts staged rows whose key does not exist.
func (p *Planner) insertNew(ctx context.Context, s string) (int64, error) {
	cols := p.cols("", p.Plan.Columns)
	q := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s AS s WHERE NOT EXISTS (SELECT 1 FROM %s AS t WHERE %s)",
		p.table(), cols, p.cols("s.", p.Plan.Columns), s, p.table(), p.keyMatch("t", "s"))
	return p.X.Exec(ctx, q)
}

// identical counts staged rows the target already holds exactly.
func (p *Planner) identical(ctx context.Context, s string) (int64, error) {
	var n int64
	q := fmt.Sprintf("SELECT count(*) FROM %s AS s WHERE EXISTS (SELECT 1 FROM %s AS t WHERE %s AND %s)",
		s, p.table(), p.keyMatch("t", "s"), p.sameRow("t", "s"))
	err := p.X.Query(ctx, q, nil, func(v []any) error { n = toInt(v[0]); return nil })
	return n, err
}

func isKey(keys []string, name string) bool {
	for _, k := range keys {
		if k == name {
			return true
		}
	}
	return false
}
