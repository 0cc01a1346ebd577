package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type backfillOpts struct {
	from, to, step, ledger string
	parallel, retries      int
	lease, ttl, poll       time.Duration
	backoff, maxBackoff    time.Duration
	asJSON                 bool
}

// maxBackfillDates bounds a backfill's range: a step or range typed
// wrong (1m for 1d) should be refused, not start a million runs.
const maxBackfillDates = 100_000

func backfillCmd(e *env) *cobra.Command {
	var o backfillOpts
	c := &cobra.Command{
		Use:   "backfill --from DATE --to DATE [flags] -- COMMAND [ARG...]",
		Short: "Run a load over a range of execution dates, in parallel, resumable, across machines",
		Long: `Run COMMAND once for each execution date in [--from, --to), --step apart,
--parallel at a time. Each argument of COMMAND is a template over
{{.ExecutionDate}}, {{.DataIntervalStart}} and {{.DataIntervalEnd}} (the date
and the date plus --step). A COMMAND named idem runs this same idem binary.

Each date is claimed in the ledger (a key store, as for idem once) under a
key made of the date, the whole expanded command and the content of the files
its templated arguments name (orders_{{.ExecutionDate}}.csv): a date done with
the same command and the same input is skipped, so a backfill stopped or killed halfway resumes where it
was when run again. Several backfills on different machines sharing one
PostgreSQL (or Redis) ledger split the dates between them, each date run once;
a date another process is running is looked at again every --poll, and taken
over if that process dies (its lease expires).

Exit 1 from COMMAND is retried --retries times, with exponential backoff and
jitter; exit 2 (bad input) is never retried. The backfill exits 0 when every
date is done, 2 when every failed date failed with exit 2, and 1 otherwise
(run it again to retry what failed).`,
		Example: `  idem backfill --from 2024-01-01 --to 2024-02-01 --parallel 4 -- \
      idem load 'exports/orders_{{.ExecutionDate}}.csv' --to postgres://localhost/dw \
      --table orders --partition 'order_date={{.ExecutionDate}}' --execution-date '{{.ExecutionDate}}'
  # two machines, one ledger: each date runs once
  idem backfill --from 2024-01-01 --to 2025-01-01 --ledger postgres://ledger-host/idem -- ./load-day.sh '{{.ExecutionDate}}'
  idem backfill --from 2024-03-01T00:00:00Z --to 2024-03-02T00:00:00Z --step 1h --json -- ./hourly '{{.DataIntervalStart}}'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			jobs, err := backfillJobs(o, args)
			if err != nil {
				return err
			}
			self, _ := os.Executable()
			spec := idem.BackfillSpec{Jobs: jobs, Parallel: o.parallel, Retries: o.retries, Backoff: o.backoff,
				MaxBackoff: o.maxBackoff, Lease: o.lease, TTL: o.ttl, Poll: o.poll, Stderr: e.stderr, Self: self}
			if err := spec.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := openKeyStore(ctx, o.ledger)
			if err != nil {
				return err
			}
			defer store.Close()
			bar := backfillBar(e, len(jobs))
			counts := map[idem.BackfillStatus]int{}
			err = idem.Backfill(ctx, store, spec, func(r idem.BackfillResult) {
				counts[r.Status]++
				if bar != nil {
					_ = bar.Add(1)
				}
				if o.asJSON {
					b, _ := json.Marshal(r)
					fmt.Fprintf(e.stdout, "%s\n", b)
					return
				}
				line := fmt.Sprintf("%s  %-7s  %d attempt(s)  %.2fs", r.Date, r.Status, r.Attempts, r.Seconds)
				if r.Status == idem.BackfillFailed {
					line += fmt.Sprintf("  exit %d: %s", r.Exit, r.Error)
				}
				fmt.Fprintln(e.stdout, line)
			})
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintf(e.stderr, "idem: backfill of %d date(s): %d ran, %d skipped (done before), %d failed\n",
				len(jobs), counts[idem.BackfillRan], counts[idem.BackfillSkipped], counts[idem.BackfillFailed])
			return err
		},
	}
	c.Flags().SetInterspersed(false)
	fl := c.Flags()
	fl.StringVar(&o.from, "from", "", "first execution date (YYYY-MM-DD or RFC 3339 timestamp), included")
	fl.StringVar(&o.to, "to", "", "end of the range, excluded")
	fl.StringVar(&o.step, "step", "1d", "distance between execution dates (e.g. 1d, 1w, 6h)")
	fl.IntVar(&o.parallel, "parallel", 1, "dates run at a time by this process")
	fl.IntVar(&o.retries, "retries", 3, "times a date whose command exited 1 runs again")
	fl.DurationVar(&o.backoff, "backoff", time.Second, "wait before the first retry; doubles for each next one")
	fl.DurationVar(&o.maxBackoff, "max-backoff", time.Minute, "longest wait between retries")
	fl.StringVar(&o.ledger, "ledger", defaultKeyStore, "where dates are claimed and recorded: sqlite:PATH, postgres://…, redis://…")
	fl.DurationVar(&o.lease, "lease", 5*time.Minute, "how long a date's claim outlives a backfill that died running it")
	fl.DurationVar(&o.ttl, "ttl", 8760*time.Hour, "how long a done date is remembered")
	fl.DurationVar(&o.poll, "poll", 2*time.Second, "how often to look again at a date another process is running")
	fl.BoolVar(&o.asJSON, "json", false, "print one JSON object per date")
	return c
}

// backfillJobs expands the command template for every date of the range.
func backfillJobs(o backfillOpts, args []string) ([]idem.BackfillJob, error) {
	if o.from == "" || o.to == "" {
		return nil, idem.BadInput("--from and --to are required")
	}
	if len(args) == 0 {
		return nil, idem.BadInput("no command: idem backfill --from DATE --to DATE -- COMMAND [ARG...]")
	}
	from, _, err := parseExecDate(o.from)
	if err != nil {
		return nil, idem.BadInput("--from %q: want YYYY-MM-DD or an RFC 3339 timestamp", o.from)
	}
	to, _, err := parseExecDate(o.to)
	if err != nil {
		return nil, idem.BadInput("--to %q: want YYYY-MM-DD or an RFC 3339 timestamp", o.to)
	}
	step, err := parseInterval(o.step)
	if err != nil {
		return nil, idem.BadInput("--step %q: want a positive duration such as 1d, 1w or 6h", o.step)
	}
	if !from.Before(to) {
		return nil, idem.BadInput("--from %s is not before --to %s: no dates to run", o.from, o.to)
	}
	if n := to.Sub(from) / step; n >= maxBackfillDates {
		return nil, idem.BadInput("--from %s to --to %s by --step %s is more than %d dates", o.from, o.to, o.step, maxBackfillDates)
	}
	var jobs []idem.BackfillJob
	for d := from; d.Before(to); d = d.Add(step) {
		date := idem.FormatTimestamp(d) // keeps a fraction of a second (--step 500ms)
		if d.Truncate(24*time.Hour).Equal(d) && len(o.from) == len("2006-01-02") {
			date = d.Format("2006-01-02")
		}
		data, err := templateData(date, o.step)
		if err != nil {
			return nil, err
		}
		cmd := make([]string, len(args))
		var inputs []string
		for i, a := range args {
			if cmd[i], err = render(fmt.Sprintf("command argument %d", i+1), a, data); err != nil {
				return nil, err
			}
			if i > 0 && strings.Contains(a, "{{") {
				inputs = append(inputs, dateFiles(cmd[i])...)
			}
		}
		digest := ""
		if len(inputs) > 0 {
			if digest, err = source.Digest(inputs); err != nil {
				return nil, fmt.Errorf("digest the input of %s: %w", data["ExecutionDate"], err)
			}
		}
		jobs = append(jobs, idem.BackfillJob{Date: data["ExecutionDate"], Command: cmd, Inputs: digest})
	}
	return jobs, nil
}

// dateFiles lists the regular files an argument rendered from a template
// names, itself or as a glob (orders_2024-01-05*.csv), sorted; none for
// anything else (a flag, a URL, a partition value).
func dateFiles(arg string) []string {
	names := []string{arg}
	if strings.ContainsAny(arg, "*?[") {
		names, _ = filepath.Glob(arg)
	}
	var out []string
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && st.Mode().IsRegular() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// backfillBar is a bar with an ETA over the dates, on a terminal only.
func backfillBar(e *env, n int) *progressbar.ProgressBar {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription("backfill"),
		progressbar.OptionSetItsString("dates"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
	)
}
