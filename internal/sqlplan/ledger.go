package sqlplan

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/idemhq/idem"
)

// LedgerTable is where every SQL target records its runs, in the target
// itself, so the record commits or rolls back with the data.
const LedgerTable = "idem_runs"

var ledgerCols = []string{
	"run_id", "pipeline", "table_name", "partition_label", "execution_date", "strategy",
	"input_digest", "input_fingerprint", "output_fingerprint", "output_rows", "state_token",
	"rows_in", "inserted", "updated", "deleted", "unchanged", "skipped", "status", "started_at", "finished_at",
}

// LedgerDDL creates the ledger. Times are canonical UTC text so the table
// reads the same on every backend.
func LedgerDDL(d Dialect, textType, keyTextType string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", d.Quote(LedgerTable))
	for i, c := range ledgerCols {
		if i > 0 {
			b.WriteString(", ")
		}
		typ := textType
		switch c {
		case "output_rows", "rows_in", "inserted", "updated", "deleted", "unchanged", "skipped":
			typ = "BIGINT NOT NULL"
		case "run_id":
			typ = keyTextType + " PRIMARY KEY"
		}
		b.WriteString(d.Quote(c) + " " + typ)
	}
	b.WriteString(")")
	return b.String()
}

// LedgerIndexDDL speeds up the fast path's "last run of this table and
// partition" lookup.
func LedgerIndexDDL(d Dialect, keyTextType string) string {
	return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s, %s, %s)", d.Quote("idem_runs_scope"), d.Quote(LedgerTable),
		d.Quote("table_name"), d.Quote("partition_label"), d.Quote("finished_at"))
}

// InsertRun appends one ledger row.
func InsertRun(ctx context.Context, d Dialect, x Execer, r *idem.Run) error {
	ph := make([]string, len(ledgerCols))
	qc := make([]string, len(ledgerCols))
	for i, c := range ledgerCols {
		ph[i] = d.Placeholder(i + 1)
		qc[i] = d.Quote(c)
	}
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", d.Quote(LedgerTable), strings.Join(qc, ", "), strings.Join(ph, ", "))
	_, err := x.Exec(ctx, q, r.RunID, r.Pipeline, r.Table, r.Partition, r.ExecutionDate, r.Strategy,
		r.InputDigest, r.InputFingerprint, r.OutputFingerprint, r.OutputRows, r.StateToken,
		r.RowsIn, r.Inserted, r.Updated, r.Deleted, r.Unchanged, r.Skipped, r.Status, r.StartedAt, r.FinishedAt)
	return err
}

// QueryRuns reads ledger rows newest first.
func QueryRuns(ctx context.Context, d Dialect, x Execer, f idem.RunFilter) ([]idem.Run, error) {
	qc := make([]string, len(ledgerCols))
	for i, c := range ledgerCols {
		qc[i] = d.Quote(c)
	}
	var where []string
	var args []any
	if f.Table != "" {
		args = append(args, f.Table)
		where = append(where, d.Quote("table_name")+" = "+d.Placeholder(len(args)))
	}
	if f.Partition != "" || f.ExactPartition {
		args = append(args, f.Partition)
		where = append(where, d.Quote("partition_label")+" = "+d.Placeholder(len(args)))
	}
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(qc, ", "), d.Quote(LedgerTable))
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY %s DESC, %s DESC", d.Quote("finished_at"), d.Quote("run_id"))
	if f.Limit > 0 {
		q += " LIMIT " + strconv.Itoa(f.Limit)
	}
	var out []idem.Run
	err := x.Query(ctx, q, args, func(v []any) error {
		s := func(i int) string {
			switch x := v[i].(type) {
			case string:
				return x
			case []byte:
				return string(x)
			case nil:
				return ""
			}
			return fmt.Sprint(v[i])
		}
		n := func(i int) int64 { return toInt(v[i]) }
		out = append(out, idem.Run{
			RunID: s(0), Pipeline: s(1), Table: s(2), Partition: s(3), ExecutionDate: s(4), Strategy: s(5),
			InputDigest: s(6), InputFingerprint: s(7), OutputFingerprint: s(8), OutputRows: n(9), StateToken: s(10),
			RowsIn: n(11), Inserted: n(12), Updated: n(13), Deleted: n(14), Unchanged: n(15), Skipped: n(16),
			Status: s(17), StartedAt: s(18), FinishedAt: s(19),
		})
		return nil
	})
	return out, err
}
