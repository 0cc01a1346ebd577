package sqlplan

import (
	"context"

	"github.com/idemhq/idem"
)

// Ledger implements the read side of idem.Target that every SQL backend
// shares (the ledger, state tokens, reading rows back). A backend embeds it
// and fills in what differs.
type Ledger struct {
	D Backend
	X Execer
	// DescribeTable returns a table's columns or idem.ErrNoTable.
	DescribeTable func(ctx context.Context, table string) (idem.Schema, error)
	// Token computes the backend's state token outside a load.
	Token func(ctx context.Context, table string, part *idem.Partition) (string, error)
	// NoLedger reports an error meaning idem_runs does not exist yet.
	NoLedger func(error) bool
}

func (l *Ledger) Describe(ctx context.Context, table string) (idem.Schema, error) {
	return l.DescribeTable(ctx, table)
}

func (l *Ledger) LastRun(ctx context.Context, table, partition string) (*idem.Run, error) {
	runs, err := l.Runs(ctx, idem.RunFilter{Table: table, Partition: partition, ExactPartition: true, Limit: 1})
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	return &runs[0], nil
}

func (l *Ledger) StateToken(ctx context.Context, table string, part *idem.Partition) (string, error) {
	return l.Token(ctx, table, part)
}

func (l *Ledger) RecordSkip(ctx context.Context, r *idem.Run) error {
	return InsertRun(ctx, l.D, l.X, r)
}

func (l *Ledger) Scan(ctx context.Context, table string, part *idem.Partition, fn func(idem.Schema, idem.Row) error) error {
	schema, err := l.DescribeTable(ctx, table)
	if err != nil {
		return err
	}
	return Scan(ctx, l.D, l.X, table, schema, part, fn)
}

func (l *Ledger) Runs(ctx context.Context, f idem.RunFilter) ([]idem.Run, error) {
	runs, err := QueryRuns(ctx, l.D, l.X, f)
	if err != nil && l.NoLedger(err) {
		return nil, nil
	}
	return runs, err
}
