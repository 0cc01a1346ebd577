package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
	"github.com/spf13/cobra"
)

type loadFlags struct {
	to, from, query, table, strategy, key, partition string
	execDate, interval, pipeline, dedupe             string
	stamps                                           []string
	create, noCreate, evolve, allowEmpty, dryRun     bool
	force, asJSON, noHeader, noDigest                bool
	lockTimeout                                      time.Duration
	format, columns, null                            string
}

func loadCmd(e *env) *cobra.Command {
	f := &loadFlags{}
	c := &cobra.Command{
		Use:   "load [SOURCE...] --table NAME [flags]",
		Short: "Load rows into a table with an idempotent write strategy",
		Long: `Load rows from files (CSV, TSV, JSON lines, Parquet; .gz/.zst; globs; - for stdin)
or from a SQL query into a target, with a write strategy that makes a rerun
change nothing. The whole input is validated before anything is committed,
the load is one transaction, and the run is recorded in idem_runs.

Strategies:
  upsert             new keys inserted, changed rows updated, others kept (needs --key)
  insert-missing     new keys inserted, existing rows untouched (needs --key)
  replace-partition  the partition's rows are exactly the input (needs --partition)
  replace            the table's rows are exactly the input
  merge              like replace(-partition), writing only the difference (needs --key)`,
		Example: `  # Load the example orders into ./idem.db; run it twice, the second run changes nothing
  idem load examples/orders.csv --table orders --key order_id

  # Replace one day's partition in PostgreSQL, parameterised by the execution date
  idem load 'exports/orders_{{.ExecutionDate}}.csv' --to postgres://localhost/test \
      --table orders --partition 'order_date={{.ExecutionDate}}' --execution-date 2024-01-05

  # Keep only the difference, from a query
  idem load --from sqlite:src.db --query "select * from orders where day = '{{.ExecutionDate}}'" \
      --execution-date 2024-01-05 --to postgres://localhost/test --table orders --key order_id --strategy merge`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLoad(cmd.Context(), e, f, args)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.to, "to", "sqlite:idem.db", "target URL (sqlite:PATH, postgres://…, file:DIR, s3://bucket/prefix?endpoint=…)")
	fl.StringVar(&f.from, "from", "", "source database URL for --query")
	fl.StringVar(&f.query, "query", "", "SQL query to read rows from (with --from); a template")
	fl.StringVar(&f.table, "table", "", "target table (required)")
	fl.StringVar(&f.strategy, "strategy", "", "upsert|insert-missing|replace-partition|replace|merge")
	fl.StringVar(&f.key, "key", "", "key column(s), comma-separated")
	fl.StringVar(&f.partition, "partition", "", "partition COL=VALUE; a template")
	fl.StringVar(&f.execDate, "execution-date", "", "logical date of the run (YYYY-MM-DD or timestamp)")
	fl.StringVar(&f.interval, "interval", "1d", "length of the data interval starting at --execution-date (e.g. 1d, 6h)")
	fl.StringVar(&f.pipeline, "pipeline", "", "pipeline name recorded in the ledger")
	fl.StringVar(&f.dedupe, "dedupe", "error", "duplicate keys in the input: error|first|last")
	fl.StringArrayVar(&f.stamps, "stamp", nil, "add a constant column COL=TEMPLATE (repeatable)")
	fl.BoolVar(&f.create, "create", true, "create a missing table with inferred types")
	fl.BoolVar(&f.noCreate, "no-create", false, "fail when the table does not exist")
	fl.BoolVar(&f.evolve, "evolve", false, "add input columns the table lacks")
	fl.BoolVar(&f.allowEmpty, "allow-empty", false, "let an empty input empty the table or partition")
	fl.DurationVar(&f.lockTimeout, "lock-timeout", 10*time.Minute, "how long to wait for a concurrent load of the same table/partition")
	fl.BoolVar(&f.dryRun, "dry-run", false, "validate and compute the result, commit nothing")
	fl.BoolVar(&f.force, "force", false, "skip the rerun fast path (still writes only what differs)")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fl.BoolVar(&f.noDigest, "no-digest", false, "compare nothing in the client: keyed reruns compare every row in the database and keep no row digest, keyless loads swap their whole scope (slower, stores nothing extra)")
	fl.StringVar(&f.format, "format", "", "input format csv|tsv|jsonl|parquet (default: from the file extension; required for -)")
	fl.BoolVar(&f.noHeader, "no-header", false, "CSV/TSV files have no header line (then give --columns)")
	fl.StringVar(&f.columns, "columns", "", "column names for --no-header, comma-separated")
	fl.StringVar(&f.null, "null", "", "CSV NULL marker (default: unquoted empty field)")
	return c
}

// templateData holds the run's logical times; only the ones that were given
// exist, so a template that needs a missing one fails instead of rendering
// an empty string.
func templateData(execDate, interval string) (map[string]string, error) {
	data := map[string]string{}
	if execDate == "" {
		return data, nil
	}
	start, isDate, err := parseExecDate(execDate)
	if err != nil {
		return nil, err
	}
	d, err := parseInterval(interval)
	if err != nil {
		return nil, err
	}
	end := start.Add(d)
	fmtT := func(t time.Time) string {
		if isDate && t.Truncate(24*time.Hour).Equal(t) {
			return t.Format("2006-01-02")
		}
		return idem.FormatTimestamp(t)
	}
	data["ExecutionDate"] = fmtT(start)
	data["DataIntervalStart"] = fmtT(start)
	data["DataIntervalEnd"] = fmtT(end)
	return data, nil
}

func parseExecDate(s string) (time.Time, bool, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true, nil
	}
	t, err := idem.ParseTimestamp(s)
	if err != nil {
		return time.Time{}, false, idem.BadInput("--execution-date %q: want YYYY-MM-DD or an RFC 3339 timestamp", s)
	}
	return t.UTC(), false, nil
}

// parseInterval accepts Go durations plus days and weeks, which Go's
// time.ParseDuration lacks and schedules use most.
func parseInterval(s string) (time.Duration, error) {
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		k, err := strconv.Atoi(s[:n-1])
		if err == nil && k > 0 {
			d := time.Duration(k) * 24 * time.Hour
			if s[n-1] == 'w' {
				d *= 7
			}
			return d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, idem.BadInput("--interval %q: want a positive duration such as 1d, 6h or 15m", s)
	}
	return d, nil
}

func render(flag, text string, data map[string]string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := template.New(flag).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", idem.BadInput("%s: bad template: %v", flag, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		if len(data) == 0 {
			return "", idem.BadInput("%s %q uses the execution date, but --execution-date was not given", flag, text)
		}
		return "", idem.BadInput("%s: %v", flag, err)
	}
	return b.String(), nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func newRunID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func runLoad(ctx context.Context, e *env, f *loadFlags, args []string) error {
	spec := idem.LoadSpec{
		Table: f.table, Strategy: idem.Strategy(f.strategy), Key: splitList(f.key),
		Dedupe: idem.Dedupe(f.dedupe), Create: f.create && !f.noCreate, Evolve: f.evolve,
		AllowEmpty: f.allowEmpty, DryRun: f.dryRun, Force: f.force, LockTimeout: f.lockTimeout, NoDigest: f.noDigest,
		Pipeline: f.pipeline,
	}
	data, err := templateData(f.execDate, f.interval)
	if err != nil {
		return err
	}
	spec.ExecutionDate = data["ExecutionDate"]
	if f.partition != "" {
		p, err := render("--partition", f.partition, data)
		if err != nil {
			return err
		}
		if spec.Partition, err = idem.ParsePartition(p); err != nil {
			return err
		}
	}
	for _, s := range f.stamps {
		col, tmpl, ok := strings.Cut(s, "=")
		if !ok || col == "" {
			return idem.BadInput("--stamp %q: want COL=TEMPLATE", s)
		}
		v, err := render("--stamp "+col, tmpl, data)
		if err != nil {
			return err
		}
		spec.Stamps = append(spec.Stamps, idem.Stamp{Column: col, Value: v})
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	if (f.from == "") != (f.query == "") {
		return idem.BadInput("--from and --query go together")
	}
	if f.from != "" && len(args) > 0 {
		return idem.BadInput("give either files or --from/--query, not both")
	}
	if f.from == "" && len(args) == 0 {
		return idem.BadInput("no input: name files (or - for stdin), or give --from and --query")
	}

	// Open the input before the target so that bad input never touches it.
	var rr idem.RecordReader
	var digest string
	var inputBytes int64
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if f.from != "" {
		q, err := render("--query", f.query, data)
		if err != nil {
			return err
		}
		src, err := openTarget(ctx, f.from)
		if err != nil {
			return err
		}
		closers = append(closers, func() { src.Close() })
		qs, ok := src.(queryable)
		if !ok {
			return idem.BadInput("--from %s cannot run queries", idem.RedactURL(f.from))
		}
		if rr, err = qs.Query(ctx, q); err != nil {
			return err
		}
	} else {
		var patterns []string
		for _, a := range args {
			p, err := render("source", a, data)
			if err != nil {
				return err
			}
			patterns = append(patterns, p)
		}
		files, err := source.Expand(patterns)
		if err != nil {
			return err
		}
		// Spool stdin to a file so it can be digested for the rerun fast
		// path; the reader still sees "-" so messages name stdin.
		digestFiles := append([]string{}, files...)
		stdin := e.stdin
		for i, name := range files {
			if name != "-" {
				continue
			}
			tmp, err := source.Spool(e.stdin, "")
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			closers = append(closers, func() { os.Remove(tmp) })
			fh, err := os.Open(tmp)
			if err != nil {
				return err
			}
			closers = append(closers, func() { fh.Close() })
			digestFiles[i], stdin = tmp, fh
		}
		if digest, err = source.Digest(digestFiles); err != nil {
			return err
		}
		for _, f := range digestFiles {
			if st, err := os.Stat(f); err == nil {
				inputBytes += st.Size()
			}
		}
		opt := source.Options{Format: f.format, NoHeader: f.noHeader, Columns: splitList(f.columns), Null: f.null, HasNull: f.null != ""}
		if rr, err = source.Open(files, stdin, opt); err != nil {
			return err
		}
		closers = append(closers, func() { rr.Close() })
	}
	if digest != "" {
		spec.InputDigest = specDigest(digest, &spec, f)
	}

	t, err := openTarget(ctx, f.to)
	if err != nil {
		return err
	}
	defer t.Close()
	spec.RunID = newRunID(time.Now())
	prog := newProgress(e.stderr, rr, inputBytes)
	res, err := idem.Load(ctx, t, prog, spec)
	prog.finish()
	if err != nil {
		return err
	}
	if f.asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	fmt.Fprintln(e.stdout, res.Line())
	return nil
}

// specDigest binds the raw input digest to everything else that decides
// what the load writes, so a rerun with other options is not mistaken for
// an identical one.
func specDigest(input string, s *idem.LoadSpec, f *loadFlags) string {
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%s\x00%s\x00%s\x00%q\x00%s\x00%s\x00", input, s.Table, s.Strategy, s.Key, s.Partition.String(), s.Dedupe)
	for _, st := range s.Stamps {
		fmt.Fprintf(h, "%s=%s\x00", st.Column, st.Value)
	}
	fmt.Fprintf(h, "%s\x00%t\x00%s\x00%q\x00%t", f.format, f.noHeader, f.columns, f.null, f.evolve)
	return hex.EncodeToString(h.Sum(nil))
}
