#!/bin/sh
# Not idempotent: the scores are drawn with random(), so every run writes
# different values for the same keys.
set -eu
psql -X -q -v ON_ERROR_STOP=1 "$JOB_DB" -c \
  "INSERT INTO scores (id, score) SELECT g, round(random()::numeric, 6) FROM generate_series(1, 5) g
   ON CONFLICT (id) DO UPDATE SET score = EXCLUDED.score"
