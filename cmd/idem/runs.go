package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

func runsCmd(e *env) *cobra.Command {
	var to, table, partition string
	var limit int
	var asJSON, noCheck bool
	c := &cobra.Command{
		Use:   "runs --to URL [--table NAME] [--partition COL=VALUE]",
		Short: "List the run ledger, newest first",
		Long: `runs lists the ledger rows idem wrote next to the data, newest first.
CONTENT compares each run's output fingerprint with the data now: current
(it still holds what the run wrote), drifted (the newest run of its scope,
but something changed the data since), superseded (a later run of the table
wrote something else), gone (the table was dropped). Checking reads each
scope whose state token moved; --no-check skips it.`,
		Example: `  idem runs                       # ledger of ./idem.db
  idem runs --to postgres://localhost/test --table orders --partition order_date=2024-01-05 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := openExisting(cmd.Context(), to)
			if err != nil {
				return err
			}
			defer t.Close()
			runs, err := t.Runs(cmd.Context(), idem.RunFilter{Table: table, Partition: partition, Limit: limit})
			if err != nil {
				return err
			}
			if len(runs) == 0 && table != "" {
				// No runs may be a typo: a table that neither exists nor
				// was ever loaded is bad input, named, not an empty list.
				part, err := parseOptionalPartition(partition)
				if err != nil {
					return err
				}
				if _, err := idem.CheckScope(cmd.Context(), t, table, part, nil); err != nil {
					return err
				}
			}
			content := make([]string, len(runs))
			if !noCheck {
				if content, err = idem.Drift(cmd.Context(), t, runs); err != nil {
					return fmt.Errorf("check content: %w", err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				for i := range runs {
					row := struct {
						*idem.Run
						Content string `json:"content,omitempty"`
					}{&runs[i], content[i]}
					if err := enc.Encode(row); err != nil {
						return err
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RUN_ID\tPIPELINE\tTABLE\tPARTITION\tEXECUTION_DATE\tSTRATEGY\tROWS_IN\tINS\tUPD\tDEL\tUNCH\tSTATUS\tFINISHED_AT\tOUTPUT_FINGERPRINT\tCONTENT")
			for i, r := range runs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", r.RunID, r.Pipeline, r.Table, r.Partition,
					r.ExecutionDate, r.Strategy, r.RowsIn, r.Inserted, r.Updated, r.Deleted, r.Unchanged, r.Status, r.FinishedAt, r.OutputFingerprint, content[i])
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&to, "to", "sqlite:idem.db", "target URL whose ledger to read")
	c.Flags().StringVar(&table, "table", "", "only this table")
	c.Flags().StringVar(&partition, "partition", "", "only this partition (COL=VALUE)")
	c.Flags().IntVar(&limit, "limit", 50, "at most this many runs (0: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per run")
	c.Flags().BoolVar(&noCheck, "no-check", false, "do not compare runs with the data now (CONTENT left empty)")
	return c
}
