package main

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

// differs makes a verify that saw different results exit 3.
type differs struct{ what string }

func (d *differs) Error() string { return d.what }
func (d *differs) ExitCode() int { return idem.ExitDiffers }

func verifyCmd(e *env) *cobra.Command {
	var to, table, partition string
	var key, exclude []string
	var runs, crashes int
	var seed uint64
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --to URL --table NAME [--key COLS] [--runs N] [--crash K] [--seed S] -- COMMAND [ARG...]",
		Short: "Run a job several times (and crash it) and prove the target ends identical",
		Long: `verify runs COMMAND (no shell) --runs times and fingerprints the table or
partition after each run; all fingerprints must be equal. With --crash K it
then starts COMMAND K more times, kills its whole process group with SIGKILL
at a moment drawn from --seed (spread over the measured run time), checks
that the state a reader sees right after the kill is the clean result (no
partial write visible), runs COMMAND to completion and checks again.

On a difference it exits 3 and reports rows added, removed and changed
between the two states, with up to 10 sample keys each when --key is given.
A run that exits non-zero on its own is reported as a failed job (exit 1),
not as a difference.`,
		Example: `  idem verify --table orders --key order_id -- idem load examples/orders.csv --table orders --key order_id
  idem verify --to postgres://localhost/test --table orders --partition order_date=2024-01-05 \
      --key order_id --crash 5 --seed 7 -- ./jobs/load_orders.sh 2024-01-05`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return idem.BadInput("give the command to verify after --, e.g. idem verify --table t -- idem load t.csv --table t")
			}
			part, err := parseOptionalPartition(partition)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("seed") && crashes > 0 {
				var b [8]byte
				if _, err := crand.Read(b[:]); err != nil {
					return err
				}
				seed = binary.LittleEndian.Uint64(b[:]) >> 1
				fmt.Fprintf(e.stderr, "idem verify: --seed %d (pass it to repeat these kill moments)\n", seed)
			}
			t, err := openTarget(cmd.Context(), to)
			if err != nil {
				return err
			}
			defer t.Close()
			rep, err := idem.Verify(cmd.Context(), t, idem.VerifySpec{
				Command: args, Runs: runs, Crashes: crashes, Seed: seed,
				Table: table, Partition: part,
				Snapshot: idem.SnapshotOptions{Key: key, Exclude: exclude},
				Output:   e.stderr,
				Log:      slog.New(e.log.Handler()),
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(e.stdout).Encode(rep); err != nil {
					return err
				}
			} else {
				printVerify(e, rep)
			}
			if !rep.Identical {
				return &differs{what: "not idempotent: " + rep.DiffOf + " differs"}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&to, "to", "sqlite:idem.db", "target URL the command writes to")
	f.StringVar(&table, "table", "", "table to compare after each run")
	f.StringVar(&partition, "partition", "", "only this partition (COL=VALUE)")
	f.StringSliceVar(&key, "key", nil, "key columns: match rows so the diff names changed keys")
	f.StringSliceVar(&exclude, "exclude", nil, "columns allowed to differ between runs")
	f.IntVar(&runs, "runs", 2, "clean runs")
	f.IntVar(&crashes, "crash", 0, "runs killed with SIGKILL at a random moment, each followed by a rerun")
	f.Uint64Var(&seed, "seed", 0, "seed for the kill moments (random and printed when not given)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printVerify(e *env, rep *idem.VerifyReport) {
	w := e.stdout
	for i, fp := range rep.Fingerprints {
		fmt.Fprintf(w, "%s: rows=%d fingerprint=%s\n", rep.Labels[i], rep.Rows[i], fp)
	}
	for i, k := range rep.Kills {
		how := "killed"
		if !k.Killed {
			how = "finished before the kill"
		}
		line := fmt.Sprintf("kill %d at %dms: %s; state after it %s", i+1, k.AtMillis, how, short(k.AfterKill))
		if k.AfterRerun != "" {
			line += "; after the rerun " + short(k.AfterRerun)
		}
		fmt.Fprintln(w, line)
	}
	if rep.Identical {
		fmt.Fprintf(w, "identical: %d runs, %d crashes (clean run %.2fs)\n", rep.Runs, rep.Crashes, rep.CleanSeconds)
		return
	}
	fmt.Fprintf(w, "DIFFERENT: %s\n", rep.DiffOf)
	fmt.Fprintln(w, indent(rep.Diff.Text()))
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12] + "…"
	}
	return fp
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
