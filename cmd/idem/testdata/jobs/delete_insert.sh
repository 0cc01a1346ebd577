#!/bin/sh
# Rerunnable but not atomic: the day's rows are deleted and re-inserted in
# two separate transactions. Two clean runs agree; a crash between the two
# statements leaves the day empty for every reader.
set -eu
psql -X -q -v ON_ERROR_STOP=1 "$JOB_DB" -c "DELETE FROM daily WHERE day = '2024-01-05'"
sleep 0.3
psql -X -q -v ON_ERROR_STOP=1 "$JOB_DB" -c \
  "INSERT INTO daily (id, day, total) SELECT g, '2024-01-05', g * 10 FROM generate_series(1, 4) g"
