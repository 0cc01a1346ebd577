package sqlplan

import (
	"context"
	"fmt"
	"strings"

	"github.com/idemhq/idem"
)

// ConflictNamer is implemented by backends whose unique-violation errors
// name the constraint's columns but not the offending row (an INSERT …
// SELECT from staging, on SQLite or PostgreSQL). ApplyLoad then finds the row itself, so a
// keyless load into a table with a primary key still reports the file and
// line of the row that broke it.
type ConflictNamer interface {
	// ConflictColumns returns the columns of the unique constraint err
	// broke, or nil when err is something else.
	ConflictColumns(err error) []string
}

// insertStaged inserts every staged row into the target; a unique
// violation the backend can name is reported at the input row that caused
// it. The insert runs in a savepoint then, because finding the row takes
// queries that PostgreSQL refuses in a transaction an error aborted.
func (p *Planner) insertStaged(ctx context.Context, tx Tx, st *Stage) (int64, error) {
	cn, naming := tx.(ConflictNamer)
	if !naming {
		return p.insertAll(ctx, st.Name)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT idem_insert"); err != nil {
		return 0, err
	}
	n, err := p.insertAll(ctx, st.Name)
	if err == nil {
		_, err = tx.Exec(ctx, "RELEASE SAVEPOINT idem_insert")
		return n, err
	}
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT idem_insert"); rerr != nil {
		return 0, err
	}
	if isRefusal(err) {
		return 0, p.refusedAt(ctx, tx, st, err)
	}
	if cols := cn.ConflictColumns(err); len(cols) > 0 {
		if located := p.conflictAt(ctx, st, cols, err); located != nil {
			return 0, located
		}
	}
	return 0, err
}

// conflictAt returns an input error at the first staged row whose cols
// equal those of a target row or of an earlier staged row; nil when no row
// does (then the caller reports cause as it is).
func (p *Planner) conflictAt(ctx context.Context, st *Stage, cols []string, cause error) error {
	same := func(a, b string) string {
		parts := make([]string, len(cols))
		for i, c := range cols {
			q := p.D.Quote(c)
			parts[i] = a + "." + q + " = " + b + "." + q
		}
		return strings.Join(parts, " AND ")
	}
	seq, line := p.D.Quote(SeqCol), p.D.Quote(LineCol)
	keys := make([]string, len(cols))
	for i, c := range cols {
		keys[i] = p.D.Quote(c)
	}
	// Two set-wise queries rather than one correlated one: the staging
	// table of a keyless load has no index on these columns.
	first := int64(-1)
	for _, q := range []string{
		fmt.Sprintf("SELECT min(s.%s) FROM %s AS s JOIN %s AS t ON %s", seq, st.Name, p.table(), same("t", "s")),
		fmt.Sprintf("SELECT min(%s) FROM (SELECT %s, row_number() OVER (PARTITION BY %s ORDER BY %s) AS n FROM %s) AS d WHERE n > 1",
			seq, seq, strings.Join(keys, ", "), seq, st.Name),
	} {
		err := p.X.Query(ctx, q, nil, func(v []any) error {
			if v[0] != nil {
				if n := toInt(v[0]); first < 0 || n < first {
					first = n
				}
			}
			return nil
		})
		if err != nil {
			return nil
		}
	}
	if first < 0 {
		return nil
	}
	q := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = %s", seq, line, st.Name, seq, p.D.Placeholder(1))
	var found error
	err := p.X.Query(ctx, q, []any{first}, func(v []any) error {
		found = &idem.InputError{File: st.fileOf(toInt(v[0])), Line: toInt(v[1]),
			Msg: fmt.Sprintf("row breaks the unique constraint on (%s) of table %q: another row, in the table or earlier in the input, has the same values (%v)",
				strings.Join(cols, ", "), p.Plan.Table, cause)}
		return nil
	})
	if err != nil {
		return nil
	}
	return found
}
