#!/bin/sh
# Not idempotent: the upsert is keyed, but it stamps every row with the
# wall-clock time of the run, so each run changes loaded_at.
set -eu
psql -X -q -v ON_ERROR_STOP=1 "$JOB_DB" -c \
  "INSERT INTO orders (id, amount, loaded_at) VALUES (1, 10.50, now()), (2, 20.00, now()), (3, 7.25, now())
   ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, loaded_at = EXCLUDED.loaded_at"
