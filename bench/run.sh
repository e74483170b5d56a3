#!/usr/bin/env bash
# Run every benchmark in sequence (`make bench`); each prints its figures as ratios against a
# baseline measured in the same run, and one RESULT line collected in a summary at the end.
# BENCH_ONLY="cold_start deploy_rate" runs a subset. `bench/run.sh --smoke` (`make bench-smoke`, part
# of `make test`) runs them all with the tiny sizes of bench/smoke.env, only to prove they still run.
# Exit status: 1 if a benchmark failed to run or printed no RESULT line (a missed target is
# reported, not an error).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
limit=900
if [ "${1:-}" = "--smoke" ]; then
    set -a
    # shellcheck source=bench/smoke.env
    . bench/smoke.env
    set +a
    limit=300
fi
VAR="${VAR_DIR:-var}/bench"
mkdir -p "$VAR"
LOG="$VAR/run.log"
: >"$LOG"
status=0
for bench in ${BENCH_ONLY:-cold_start deploy_rate rest_throughput security_throughput hot_deploy admin_list channel_layer scheduler websocket outgoing_rest file_channel amqp_channel file_transfer ldap_search}; do
    echo
    out="$VAR/$bench.out"
    if ! timeout "$limit" "$PY" "bench/$bench.py" 2>&1 | tee "$out"; then
        echo "RESULT $bench: FAILED TO RUN (see output above)" | tee -a "$out"
        status=1
    elif ! grep -q "^RESULT $bench: " "$out"; then
        echo "RESULT $bench: FAILED: it printed no RESULT line" | tee -a "$out"
        status=1
    fi
    cat "$out" >>"$LOG"
done
echo
echo "== summary (full output: $LOG) =="
grep '^RESULT ' "$LOG"
exit $status
