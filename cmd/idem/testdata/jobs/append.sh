#!/bin/sh
# Not idempotent: a plain INSERT appends the same events on every run.
# JOB_DB is the database URL; PGOPTIONS selects the schema.
set -eu
psql -X -q -v ON_ERROR_STOP=1 "$JOB_DB" -c \
  "INSERT INTO events (id, kind) VALUES (1, 'signup'), (2, 'login'), (3, 'logout')"
