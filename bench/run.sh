#!/usr/bin/env bash
# Run every benchmark in sequence (`make bench`); each prints its figures as ratios against a
# baseline measured in the same run, and one RESULT line collected in a summary at the end.
# BENCH_ONLY="cold_start deploy_rate" runs a subset. Exit status: 1 if a benchmark failed to run
# (a missed target is reported, not an error).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAR="${VAR_DIR:-var}/bench"
mkdir -p "$VAR"
LOG="$VAR/run.log"
: >"$LOG"
status=0
for bench in ${BENCH_ONLY:-cold_start deploy_rate rest_throughput security_throughput hot_deploy admin_list channel_layer scheduler websocket}; do
    echo
    if ! timeout 900 "$PY" "bench/$bench.py" 2>&1 | tee -a "$LOG"; then
        echo "RESULT $bench: FAILED TO RUN (see output above)" | tee -a "$LOG"
        status=1
    fi
done
echo
echo "== summary (full output: $LOG) =="
grep '^RESULT ' "$LOG"
exit $status
