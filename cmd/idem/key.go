package main

import (
	"encoding/json"
	"fmt"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

func keyCmd(e *env) *cobra.Command {
	var asJSON, colon bool
	c := &cobra.Command{
		Use:   "key FIELD=VALUE...",
		Short: "Derive a deterministic idempotency key from business fields",
		Long: `Derive a deterministic idempotency key (64 hex characters) from named fields.

The same fields give the same key on every machine and every retry, in any
order. Unlike sha256("order_id:amount"), the encoding is unambiguous: each
name and value is length-prefixed, so order_id=1:2 amount=3 and
order_id=1 amount=2:3 give different keys. With --colon, the arguments are
plain values and the key is the seed's sha256("1042:19.99"), for a service
that already derives keys so; a value holding ":" is refused there, as that
is where the seed's encoding collides.`,
		Example: `  idem key order_id=1042 amount=19.99
  idem key --colon 1042 19.99        # = sha256("1042:19.99"), the seed's key
  curl -X POST https://api.example.com/charge -H "Idempotency-Key: \"$(idem key order_id=1042 amount=19.99)\"" …
  idem once --key "$(idem key job=send-invoice invoice=2024-117)" -- ./send-invoice 2024-117`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if colon {
				k, err := idem.ColonKey(args)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(e.stdout).Encode(map[string]any{"key": k, "values": args})
				}
				_, err = fmt.Fprintln(e.stdout, k)
				return err
			}
			fields, err := idem.ParseKeyFields(args)
			if err != nil {
				return err
			}
			k := idem.DeriveKey(fields)
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"key": k, "fields": fields})
			}
			_, err = fmt.Fprintln(e.stdout, k)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, `print {"key": …, "fields": …}`)
	c.Flags().BoolVar(&colon, "colon", false, `the seed's sha256("v1:v2…") of VALUE… in the order given, to match a service that derives keys that way (a value holding ":" is refused)`)
	return c
}
