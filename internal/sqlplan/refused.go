package sqlplan

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemhq/idem"
)

// Refusal is a row the target table refused (NOT NULL, CHECK, a foreign
// key, a value too long or out of range for its column) in a statement
// that wrote staged rows. Backends return it from Exec; it is bad input
// (an *idem.InputError underneath, exit 2). The statement that failed
// worked on the whole staging table, so the error does not say which
// input row it was: ApplyLoad finds that with refusedAt when it can.
type Refusal struct{ *idem.InputError }

func (r *Refusal) Unwrap() error { return r.InputError }

func isRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}

// located runs fn, statements that write the staged rows into the target,
// under a savepoint, so that after a Refusal the transaction can still be
// used (PostgreSQL aborts a transaction at its first error) to find the
// refused row's input line. Rows written there bear the savepoint's
// version, not the transaction's (Versioned.StampVersion).
func (p *Planner) located(ctx context.Context, tx Tx, st *Stage, fn func() error) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT idem_apply"); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		_, err = tx.Exec(ctx, "RELEASE SAVEPOINT idem_apply")
		return err
	}
	if !isRefusal(err) {
		return err
	}
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT idem_apply"); rerr != nil {
		return err
	}
	return p.refusedAt(ctx, tx, st, err)
}

// refusedAt returns cause at the input line of the first staged row the
// table refuses on its own. It bisects the staged rows by ordinal,
// inserting a range at a time under a savepoint that is always rolled
// back; a conflict on a unique key is skipped (ON CONFLICT DO NOTHING),
// but both SQLite and PostgreSQL check a row's types, NOT NULL and CHECK
// constraints before they look for conflicts, so a range fails exactly
// when it holds a refused row. The ranges halve, so the probes write
// about as many rows as the staging table holds, once. When no single
// row is refused (the table refused what an UPDATE made of a row, say)
// or a probe fails for another reason, cause is returned as it is.
func (p *Planner) refusedAt(ctx context.Context, tx Tx, st *Stage, cause error) error {
	seq, line := p.D.Quote(SeqCol), p.D.Quote(LineCol)
	lo, hi := int64(-1), int64(-1)
	err := tx.Query(ctx, fmt.Sprintf("SELECT min(%s), max(%s) FROM %s", seq, seq, st.Name), nil, func(v []any) error {
		if v[0] != nil && v[1] != nil {
			lo, hi = toInt(v[0]), toInt(v[1])
		}
		return nil
	})
	if err != nil || lo < 0 {
		return cause
	}
	cols := p.cols("", p.Plan.Columns)
	only := ""
	if p.Plan.Strategy == idem.InsertMissing && len(p.Plan.Key) > 0 {
		// Only rows whose key is new are written; the others are skipped
		// whatever they hold, so they cannot be the refused one.
		only = fmt.Sprintf(" AND NOT EXISTS (SELECT 1 FROM %s AS t WHERE %s)", p.table(), p.keyMatch("t", "s"))
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s AS s WHERE s.%s BETWEEN %s AND %s%s ON CONFLICT DO NOTHING",
		p.table(), cols, p.cols("s.", p.Plan.Columns), st.Name, seq, p.D.Placeholder(1), p.D.Placeholder(2), only)
	// probe reports the refusal of rows a..b, nil when they all go in,
	// and ok false when the probe itself failed otherwise.
	probe := func(a, b int64) (refused error, ok bool) {
		if _, err := tx.Exec(ctx, "SAVEPOINT idem_probe"); err != nil {
			return nil, false
		}
		_, perr := tx.Exec(ctx, insert, a, b)
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT idem_probe"); err != nil {
			return nil, false
		}
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT idem_probe"); err != nil {
			return nil, false
		}
		if perr != nil && !isRefusal(perr) {
			return nil, false
		}
		return perr, true
	}
	if r, ok := probe(lo, hi); !ok || r == nil {
		return cause
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		r, ok := probe(lo, mid)
		if !ok {
			return cause
		}
		if r != nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	r, ok := probe(lo, lo)
	if !ok || r == nil {
		return cause
	}
	var n int64 = -1
	err = tx.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", line, st.Name, seq, p.D.Placeholder(1)), []any{lo}, func(v []any) error {
		n = toInt(v[0])
		return nil
	})
	if err != nil || n < 0 {
		return cause
	}
	var ie *idem.InputError
	errors.As(r, &ie)
	return &idem.InputError{File: st.fileOf(lo), Line: n, Column: ie.Column, Msg: ie.Msg, Err: ie.Err}
}
