package main

import (
	"time"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

type onceOpts struct {
	key, store, resolve string
	lease, ttl, wait    time.Duration
	atMostOnce          bool
	maxOutput           int64
}

func onceCmd(e *env) *cobra.Command {
	var o onceOpts
	c := &cobra.Command{
		Use:   "once --key KEY [flags] -- COMMAND [ARG...]",
		Short: "Run a side-effecting command at most once per idempotency key",
		Long: `Run COMMAND (no shell) only if KEY has not been done yet.

The first call claims KEY, runs COMMAND, and on exit 0 records the exit code
and stdout; a non-zero exit releases the claim so a retry runs again. Later
calls print the recorded stdout and exit 0 without running anything. While
another call holds KEY, wait up to --wait, then exit 75. If a holder died,
its lease (renewed every lease/3 while it runs) expires and the next call
runs COMMAND again (at-least-once); with --at-most-once it exits 4 instead,
until "idem once --resolve KEY done|retry" settles what happened.`,
		Example: `  idem once --key invoice-2024-117 -- ./send-invoice 2024-117
  idem once --key "$(idem key job=welcome user=42)" --store redis://127.0.0.1:6379/0 -- ./send-welcome 42
  idem once --key charge-1042 --at-most-once -- ./charge 1042
  idem once --resolve charge-1042 done     # it did happen: never run it again
  idem once --resolve charge-1042 retry    # it did not: the next call runs it`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if o.resolve != "" {
				if err := idem.CheckKey(o.resolve); err != nil {
					return err
				}
				if len(args) != 1 || (args[0] != "done" && args[0] != "retry") {
					return idem.BadInput("usage: idem once --resolve KEY done|retry")
				}
				store, err := openKeyStore(ctx, o.store)
				if err != nil {
					return err
				}
				defer store.Close()
				return idem.ResolveOnce(ctx, store, o.resolve, args[0], o.ttl, e.stderr)
			}
			spec := idem.OnceSpec{Key: o.key, Command: args, Lease: o.lease, TTL: o.ttl, Wait: o.wait,
				AtMostOnce: o.atMostOnce, MaxOutput: o.maxOutput, Stdin: e.stdin, Stdout: e.stdout, Stderr: e.stderr}
			if err := spec.Validate(); err != nil {
				return err
			}
			store, err := openKeyStore(ctx, o.store)
			if err != nil {
				return err
			}
			defer store.Close()
			return idem.Once(ctx, store, spec)
		},
	}
	c.Flags().SetInterspersed(false)
	fl := c.Flags()
	fl.StringVar(&o.key, "key", "", "idempotency key (at most 255 characters)")
	fl.StringVar(&o.store, "store", defaultKeyStore, "key store URL: sqlite:PATH, postgres://…, redis://…")
	fl.DurationVar(&o.lease, "lease", 5*time.Minute, "how long a claim outlives a holder that stopped renewing it (died)")
	fl.DurationVar(&o.ttl, "ttl", 720*time.Hour, "how long a done key is remembered")
	fl.DurationVar(&o.wait, "wait", 0, "wait this long for a running holder before exiting 75")
	fl.BoolVar(&o.atMostOnce, "at-most-once", false, "after a holder died, exit 4 instead of running again")
	fl.Int64Var(&o.maxOutput, "max-output", 1<<20, "bytes of stdout to record; more is printed but not recorded")
	fl.StringVar(&o.resolve, "resolve", "", "settle KEY's abandoned claim: done (it happened) or retry (run it again)")
	return c
}
