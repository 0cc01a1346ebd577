package sqlplan

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/idemhq/idem"
)

// Decoder turns a driver value read back from the backend into a canonical
// value; a backend's Dialect usually implements it too.
type Decoder interface {
	// SelectExpr is the expression to read column col of type t with, so
	// that Decode gets an exact value (e.g. numeric as text).
	SelectExpr(col string, t idem.Type) string
	Decode(t idem.Type, v any) (idem.Value, error)
}

// Tx is one load transaction on a SQL backend: what the backend does
// itself. Everything else of a load is ApplyLoad.
type Tx interface {
	Execer
	// Lock serialises loads of the same table and partition, waiting at
	// most plan.LockTimeout; a timeout is a retryable error.
	Lock(ctx context.Context, plan *idem.Plan) error
	// EnsureLedger creates idem_runs when missing.
	EnsureLedger(ctx context.Context) error
	Describe(ctx context.Context, table string) (idem.Schema, error)
	// Stage creates a staging table with p.StagingDDL and streams the
	// whole input into it. When direct is true the scope is empty and no
	// dedupe is asked for, so the backend may instead stream the rows
	// straight into the target (and say so in Stage.Direct); a duplicate
	// key must then surface as an *idem.InputError.
	Stage(ctx context.Context, p *Planner, rows Rows, direct bool) (*Stage, error)
	// StateToken: see idem.Target.
	StateToken(ctx context.Context, table string, part *idem.Partition) (string, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// DeltaTuner is implemented by backends whose planner needs telling that
// the staged delta is small next to the target (so probing the target's key
// index beats scanning it). BeforeDelta's settings last to the end of the
// transaction.
type DeltaTuner interface {
	BeforeDelta(ctx context.Context, stagedRows int64) error
}

// KeyEnforcer is a transaction that can say whether the target table
// enforces the load's key. A keyed load into an empty scope copies its
// rows straight into the table only then: a duplicate key in the input is
// then refused by the table at its line, while without such an index it
// would go in silently (the staging table's check is what catches it).
type KeyEnforcer interface {
	// EnforcesKey reports whether the table itself rejects a duplicate of
	// key (a primary key or unique index on key's columns or fewer).
	EnforcesKey(ctx context.Context, table string, key []string) (bool, error)
}

// DirectTokener is implemented by backends that can state the token of a
// scope whose every row this transaction wrote, without reading it (the
// scope was empty and the rows were written directly).
type DirectTokener interface {
	DirectToken(ctx context.Context, rows int64) (string, error)
}

// AsideTokener is implemented by backends that can compute the state token
// on a connection of their own, concurrently with the load's transaction.
// That is only asked while the load holds its lock and before it has
// written to the target, so the other connection sees what the load's
// transaction would.
type AsideTokener interface {
	StateTokenAside(ctx context.Context, table string, part *idem.Partition) (string, error)
	// AsideExecer reads committed data on that other connection.
	AsideExecer() Execer
}

// WrittenTokener is implemented by backends that can state the token of a
// scope holding exactly the rows that one statement of this transaction
// wrote, inside a savepoint or not, from one of those rows.
type WrittenTokener interface {
	WrittenToken(ctx context.Context, table string, part *idem.Partition, rows int64) (string, error)
}

// FingerprintTokener is implemented by backends whose state token is the
// scope's content fingerprint (SQLite): the load has just computed it.
type FingerprintTokener interface {
	TokenOf(fp idem.Fingerprint) string
}

// Rows is the validated row stream a backend stages: the *idem.Input
// itself, or the row digest's filter in front of it.
type Rows interface {
	Columns() idem.Schema
	Next() (idem.Row, error)
	Pos() idem.Pos
}

// Backend is a Dialect that can also read values back.
type Backend interface {
	Dialect
	Decoder
}

// ApplyLoad runs one load inside tx. On any error the transaction is rolled
// back, so nothing of it is visible.
func ApplyLoad(ctx context.Context, d Backend, tx Tx, plan *idem.Plan, in *idem.Input) (res *idem.Result, err error) {
	committed := false
	defer func() {
		if !committed {
			if rerr := tx.Rollback(context.WithoutCancel(ctx)); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	if err := tx.Lock(ctx, plan); err != nil {
		return nil, err
	}
	if err := tx.EnsureLedger(ctx); err != nil {
		return nil, fmt.Errorf("create ledger: %w", err)
	}
	pl := &Planner{D: d, X: tx, Plan: plan}
	// Describe again under the lock: a concurrent load may have created or
	// evolved the table since the plan was made.
	cur, err := tx.Describe(ctx, plan.Table)
	// ddl: this transaction created or altered the table, which another
	// connection cannot see (or would wait for): no reading aside then.
	ddl := false
	switch {
	case errors.Is(err, idem.ErrNoTable):
		if err := pl.CreateTable(ctx, false); err != nil {
			return nil, fmt.Errorf("create table %s: %w", plan.Table, err)
		}
		cur, ddl = plan.Columns, true
	case err != nil:
		return nil, err
	default:
		var add idem.Schema
		for _, c := range plan.Columns {
			j := cur.Index(c.Name)
			if j < 0 {
				if !plan.Evolve && plan.Exists {
					return nil, idem.BadInput("table %q has no column %q (add --evolve to add it)", plan.Table, c.Name)
				}
				add = append(add, c)
				continue
			}
			if cur[j].Type != c.Type {
				return nil, fmt.Errorf("table %q column %q changed type to %s while this load was planned; rerun", plan.Table, c.Name, cur[j].Type)
			}
		}
		if err := pl.AddColumns(ctx, add); err != nil {
			return nil, err
		}
		cur, ddl = append(cur, add...), len(add) > 0
	}

	// Only keyed loads need to know whether the scope is empty (then
	// nothing can conflict and rows go straight in); keyless loads always
	// swap their scope, and deleting from an empty one costs nothing.
	keyed := len(plan.Key) > 0
	emptyScope := false
	if keyed {
		n, err := tableRows(ctx, pl)
		if err != nil {
			return nil, err
		}
		emptyScope = n == 0
	}

	digestable := keyed && !plan.NoDigest && plan.Dedupe == idem.DedupeError && sameNames(cur, plan.Columns)
	var old *digestEntries
	if digestable && !emptyScope {
		if old, err = loadDigest(ctx, d, tx, plan, !ddl); err != nil {
			return nil, fmt.Errorf("read row digest: %w", err)
		}
	}
	var g *digester
	var rows Rows = in
	if digestable {
		if g, err = newDigester(in, plan, old); err != nil {
			return nil, err
		}
		defer g.Close()
		rows = g
	}
	// A keyless load swaps its scope whole: delete, then write straight
	// into the target. When idem loaded this scope before, the old content's
	// fingerprint is known (from the ledger, or read back); if the new rows
	// turn out to be the old ones, a savepoint undoes the swap, so a forced
	// rerun writes nothing and reports nothing changed.
	swap := !keyed
	var swapOld idem.Fingerprint
	swapComparable := false
	var swapDeleted int64
	// prior, when set, delivers the old scope's fingerprint and token,
	// read on the backend's other connection while this one swaps.
	var prior chan priorScope
	// diff, when set, is the swap done row by row (swapdiff.go).
	var diff *swapDiff
	if swap && sameNames(cur, plan.Columns) {
		// idem's last load of this scope, if any: its row count spares
		// reading a scope too big to compare row by row, and its output
		// fingerprint lets a whole swap recognise a rerun.
		runs, err := QueryRuns(ctx, d, tx, idem.RunFilter{Table: plan.Table, Partition: plan.Partition.String(), ExactPartition: true, Limit: 1})
		if err != nil {
			return nil, err
		}
		var last *idem.Run
		if len(runs) > 0 {
			last = &runs[0]
		}
		rl, locates := tx.(RowLocator)
		if locates && !plan.NoDigest && (last == nil || last.OutputRows <= diffMaxRows(plan)) {
			var expect int64
			if last != nil {
				expect = last.OutputRows
			}
			if diff, err = pl.diffSwap(ctx, rl, tx, cur, in, expect); err != nil {
				return nil, err
			}
		}
		a, aside := tx.(AsideTokener)
		switch {
		case diff != nil || last == nil:
		case aside && !ddl:
			swapComparable = true
			actx, cancel := context.WithCancel(ctx)
			defer cancel()
			prior = make(chan priorScope, 1)
			go func() { prior <- readPrior(actx, d, a, plan, cur, last) }()
		default:
			r := oldScope(ctx, d, tx.StateToken, tx, plan, cur, last)
			if r.err != nil {
				return nil, r.err
			}
			swapOld, swapComparable = r.fp, true
		}
	}
	if swap && diff == nil {
		if swapComparable {
			if _, err := tx.Exec(ctx, "SAVEPOINT idem_swap"); err != nil {
				return nil, err
			}
		}
		where, args := pl.scope("")
		if where != "" {
			where = " WHERE " + where
		}
		if swapDeleted, err = tx.Exec(ctx, "DELETE FROM "+pl.table()+where, args...); err != nil {
			return nil, err
		}
	}
	pl.Delta = old != nil
	var st *Stage
	if diff != nil {
		st = diff.st
	} else {
		direct := swap
		if emptyScope && plan.Dedupe == idem.DedupeError {
			// A table this load created has its key as primary key.
			direct = ddl
			if ke, ok := tx.(KeyEnforcer); ok && !ddl {
				if direct, err = ke.EnforcesKey(ctx, plan.Table, plan.Key); err != nil {
					return nil, err
				}
			}
		}
		if st, err = tx.Stage(ctx, pl, rows, direct); err != nil {
			return nil, err
		}
	}
	rowsIn := st.Rows
	switch {
	case g != nil:
		rowsIn = g.rowsIn
	case diff != nil:
		rowsIn = diff.rowsIn
	}
	if rowsIn == 0 && !plan.AllowEmpty && (plan.Strategy == idem.Replace || plan.Strategy == idem.ReplacePartition || plan.Strategy == idem.Merge) {
		return nil, idem.BadInput("the input has no rows: %s would empty %s; pass --allow-empty if that is what you want", plan.Strategy, scopeLabel(plan))
	}
	inFP := in.Fingerprint()
	var counts Counts
	var outFP idem.Fingerprint
	haveOut := false
	// carry, when set, states the scope's token after the delta from the
	// token before it, without reading the scope.
	var carry func(Counts) (string, bool, error)
	var priorTok string // the old scope's token (with prior)
	rolledBack := false // the swap found the old rows and undid itself
	switch {
	case diff != nil:
		counts = diff.counts
	case old != nil:
		var gone [][]byte
		if plan.Strategy != idem.Upsert && plan.Strategy != idem.InsertMissing {
			gone = g.gone()
		}
		if tu, ok := tx.(DeltaTuner); ok {
			if err := tu.BeforeDelta(ctx, st.Rows); err != nil {
				return nil, err
			}
		}
		var versioned Versioned
		var stamped stampedVersion
		if v, ok := tx.(Versioned); ok {
			if oldTok, ok := ParseVersionToken(old.token); ok {
				touched, err := pl.touchedVersions(ctx, v, st.Name, gone)
				if err != nil {
					return nil, err
				}
				carry = func(c Counts) (string, bool, error) {
					return carryToken(ctx, stamped, oldTok, touched, c, int64(len(g.changed)), int64(len(g.newKeys)), int64(len(gone)))
				}
				versioned = v
			}
		}
		err = pl.located(ctx, tx, st, func() (err error) {
			if versioned != nil {
				// The delta's rows will bear the savepoint's version.
				var ver int64
				if ver, err = versioned.StampVersion(ctx, st.Name); err != nil {
					return err
				}
				stamped = stampedVersion{versioned, ver}
			}
			counts, err = pl.ApplyDelta(ctx, st, gone, int64(len(g.changed)), int64(len(g.newKeys)))
			return err
		})
		if err != nil {
			return nil, err
		}
		counts.Skipped = g.skipped
		counts.Unchanged = rowsIn - counts.Inserted - counts.Updated - counts.Skipped
	case swap:
		counts = Counts{Deleted: swapDeleted, Inserted: st.Rows, Replaced: true}
		if !st.Direct {
			if counts.Inserted, err = pl.insertStaged(ctx, tx, st); err != nil {
				return nil, err
			}
		}
		if prior != nil {
			r := <-prior
			if r.err != nil {
				return nil, r.err
			}
			swapOld, priorTok = r.fp, r.tok
		}
		if swapComparable && inFP == swapOld {
			rolledBack = true
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT idem_swap"); err != nil {
				return nil, err
			}
			counts = Counts{Unchanged: st.Rows, Replaced: true}
		}
	case st.Direct:
		counts = Counts{Inserted: st.Rows, Replaced: true}
	default:
		// Duplicates go before the savepoint: rolling back to it must not
		// bring back rows the load drops, or one could be blamed.
		skipped, err := pl.Dedupe(ctx, st)
		if err != nil {
			return nil, err
		}
		err = pl.located(ctx, tx, st, func() (err error) {
			counts, err = pl.Apply(ctx, st, emptyScope, skipped)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	var digest entrySource
	var patch []byte // this load's change to the old digest (patch.go)
	keepDigest := false
	if g != nil && (counts.Replaced || old != nil) {
		var dfp idem.Fingerprint
		patched := false
		keepDigest = true
		if old != nil {
			patch, dfp, patched, keepDigest = g.patch(counts.Replaced)
		}
		if !patched && keepDigest {
			if digest, dfp, keepDigest, err = g.next(counts.Replaced); err != nil {
				return nil, fmt.Errorf("row digest: %w", err)
			}
		}
		if old != nil && !counts.Replaced && keepDigest {
			// The digest is the scope after the load, row by row: its sum
			// is the output fingerprint without reading the table back.
			outFP, haveOut = dfp, true
		}
	}
	switch {
	case haveOut:
	case counts.Replaced && counts.Skipped == 0 && sameNames(cur, plan.Columns):
		outFP = inFP
	default:
		if outFP, err = fingerprint(ctx, d, tx, plan.Table, cur, plan.Partition); err != nil {
			return nil, fmt.Errorf("fingerprint: %w", err)
		}
	}
	var tok string
	carried := false
	var tokErr error
	if ft, ok := tx.(FingerprintTokener); ok {
		// The backend's token is the scope's fingerprint, just computed.
		tok, carried = ft.TokenOf(outFP), true
	} else if dt, ok := tx.(DirectTokener); ok && st.Direct && !swapComparable && diff == nil {
		// Every row in scope was written by this transaction just now, in
		// no savepoint.
		tok, tokErr = dt.DirectToken(ctx, st.Rows)
		carried = true
	} else if prior != nil && rolledBack {
		// The scope is as the other connection read it.
		tok, carried = priorTok, true
	} else if wt, ok := tx.(WrittenTokener); ok && prior != nil && st.Direct {
		// The swap's one COPY, in its savepoint, wrote every row in scope.
		tok, tokErr = wt.WrittenToken(ctx, plan.Table, plan.Partition, st.Rows)
		carried = true
	} else if carry != nil {
		tok, carried, tokErr = carry(counts)
	} else if diff != nil && diff.carry != nil {
		tok, carried, tokErr = diff.carry(counts)
	}
	if tokErr == nil && !carried {
		tok, tokErr = tx.StateToken(ctx, plan.Table, plan.Partition)
	}
	if tokErr != nil {
		return nil, fmt.Errorf("state token: %w", tokErr)
	}
	if keyed {
		// Keep the scope's digest current, or drop it when this load
		// cannot say what the scope now holds row by row.
		if !keepDigest {
			digest, patch = nil, nil
		}
		if patch != nil {
			err = savePatch(ctx, d, tx, plan, old.patches, patch, tok)
		} else {
			err = saveDigest(ctx, d, tx, plan, digest, tok)
		}
		if err != nil {
			return nil, fmt.Errorf("save row digest: %w", err)
		}
	}
	res = &idem.Result{
		Table: plan.Table, Partition: plan.Partition.String(), Strategy: string(plan.Strategy),
		RowsIn: rowsIn, Inserted: counts.Inserted, Updated: counts.Updated, Deleted: counts.Deleted,
		Unchanged: counts.Unchanged, Skipped: counts.Skipped,
		InputFingerprint: inFP.Hex(), OutputFingerprint: outFP.Hex(), RunID: plan.RunID, DryRun: plan.DryRun,
	}
	if plan.DryRun {
		return res, nil // the deferred rollback discards everything
	}
	run := &idem.Run{
		RunID: plan.RunID, Pipeline: plan.Pipeline, Table: plan.Table, Partition: res.Partition,
		ExecutionDate: plan.ExecutionDate, Strategy: res.Strategy, InputDigest: plan.InputDigest,
		InputFingerprint: res.InputFingerprint, OutputFingerprint: res.OutputFingerprint, OutputRows: outFP.Rows,
		StateToken: tok, RowsIn: res.RowsIn, Inserted: res.Inserted, Updated: res.Updated, Deleted: res.Deleted,
		Unchanged: res.Unchanged, Skipped: res.Skipped, Status: "ok",
		StartedAt: idem.FormatTimestamp(plan.Started()), FinishedAt: idem.FormatTimestamp(plan.Now()),
	}
	if err := InsertRun(ctx, d, tx, run); err != nil {
		return nil, fmt.Errorf("record run: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	committed = true
	return res, nil
}

type priorScope struct {
	fp  idem.Fingerprint
	tok string
	err error
}

// readPrior is oldScope on the backend's other connection, which sees the
// scope as committed, before this load's swap.
func readPrior(ctx context.Context, d Backend, a AsideTokener, p *idem.Plan, cur idem.Schema, run *idem.Run) priorScope {
	return oldScope(ctx, d, a.StateTokenAside, a.AsideExecer(), p, cur, run)
}

// oldScope is the scope's fingerprint as run left it: the ledger's output
// fingerprint when the state token proves nothing changed since, otherwise
// read back through x; and the token.
func oldScope(ctx context.Context, d Backend, token func(context.Context, string, *idem.Partition) (string, error),
	x Execer, p *idem.Plan, cur idem.Schema, run *idem.Run) (r priorScope) {
	if r.tok, r.err = token(ctx, p.Table, p.Partition); r.err != nil {
		return r
	}
	if run.StateToken != "" && run.OutputFingerprint != "" && r.tok == run.StateToken {
		r.fp, r.err = idem.ParseFingerprint(run.OutputFingerprint, run.OutputRows)
		return r
	}
	r.fp, r.err = fingerprint(ctx, d, x, p.Table, cur, p.Partition)
	return r
}

func scopeLabel(p *idem.Plan) string {
	if p.Partition != nil {
		return fmt.Sprintf("partition %s of %q", p.Partition, p.Table)
	}
	return fmt.Sprintf("table %q", p.Table)
}

func sameNames(a, b idem.Schema) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if b.Index(c.Name) < 0 {
			return false
		}
	}
	return true
}

func tableRows(ctx context.Context, p *Planner) (int64, error) {
	var n int64
	// EXISTS-style probe: cheaper than count(*) on a big table.
	err := p.X.Query(ctx, "SELECT 1 FROM "+p.table()+" LIMIT 1", nil, func([]any) error { n = 1; return nil })
	return n, err
}

// ScanQuery is the SELECT that reads a table or partition back, one
// expression per column of schema, with the partition value bound.
func ScanQuery(d Backend, table string, schema idem.Schema, part *idem.Partition) (string, []any, error) {
	return scanQuery(d, "", table, schema, part)
}

// scanQuery is ScanQuery with lead, when not empty, read before the
// columns.
func scanQuery(d Backend, lead, table string, schema idem.Schema, part *idem.Partition) (string, []any, error) {
	exprs := make([]string, 0, len(schema)+1)
	if lead != "" {
		exprs = append(exprs, lead)
	}
	for _, c := range schema {
		exprs = append(exprs, d.SelectExpr(d.Quote(c.Name), c.Type))
	}
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(exprs, ", "), d.Quote(table))
	if part == nil {
		return q, nil, nil
	}
	typ, v, err := PartitionValue(table, schema, part)
	if err != nil {
		return "", nil, err
	}
	q += " WHERE " + d.Quote(part.Column) + " = " + d.Placeholder(1)
	return q, []any{d.Bind(typ, idem.V(v))}, nil
}

// PartitionValue is the partition column's type and the value in its
// canonical form, or bad input naming what does not fit the table.
func PartitionValue(table string, schema idem.Schema, part *idem.Partition) (idem.Type, string, error) {
	j := schema.Index(part.Column)
	if j < 0 {
		return 0, "", idem.BadInput("table %q has no column %q to partition by", table, part.Column)
	}
	v, err := idem.Canon(schema[j].Type, part.Value)
	if err != nil {
		return 0, "", idem.BadInput("partition %s: %q %v", part.Column, part.Value, err)
	}
	return schema[j].Type, v, nil
}

// Scan reads a table or partition back in canonical form.
func Scan(ctx context.Context, d Backend, x Execer, table string, schema idem.Schema, part *idem.Partition, fn func(idem.Schema, idem.Row) error) error {
	return scan(ctx, d, x, "", table, schema, part, 0, func(_ int64, r idem.Row) error { return fn(schema, r) })
}

// ScanLocatedBy reads a table or partition back like Scan, with the
// integer expression loc (a rowid) read alongside each row, and at most
// limit rows when limit is positive: a RowLocator's scan for backends whose
// rows have one.
func ScanLocatedBy(ctx context.Context, d Backend, x Execer, loc, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(int64, idem.Row) error) error {
	return scan(ctx, d, x, loc, table, schema, part, limit, fn)
}

func scan(ctx context.Context, d Backend, x Execer, lead, table string, schema idem.Schema, part *idem.Partition, limit int64, fn func(int64, idem.Row) error) error {
	q, args, err := scanQuery(d, lead, table, schema, part)
	if err != nil {
		return err
	}
	if limit > 0 {
		q += " LIMIT " + strconv.FormatInt(limit, 10)
	}
	row := make(idem.Row, len(schema))
	return x.Query(ctx, q, args, func(vals []any) error {
		var loc int64
		if lead != "" {
			loc, vals = toInt(vals[0]), vals[1:]
		}
		for i, v := range vals {
			cv, err := d.Decode(schema[i].Type, v)
			if err != nil {
				return fmt.Errorf("table %q column %q: %w", table, schema[i].Name, err)
			}
			row[i] = cv
		}
		return fn(loc, row)
	})
}

func fingerprint(ctx context.Context, d Backend, x Execer, table string, schema idem.Schema, part *idem.Partition) (idem.Fingerprint, error) {
	var fp idem.Fingerprint
	h := idem.NewRowHasher(schema)
	err := Scan(ctx, d, x, table, schema, part, func(_ idem.Schema, r idem.Row) error {
		fp.Add(h.Hash(r))
		return nil
	})
	return fp, err
}
