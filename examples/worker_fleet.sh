#!/usr/bin/env bash
# A worker fleet: two `async-consumer worker` processes sharing one PostgreSQL store.
#
# It adds the eight trials of examples/grid.jsonl to the store, starts two workers in the
# background (2 trials at a time each; they could as well run on two machines), waits for both
# to run out of trials, then prints the store's status. Every trial runs exactly once: a worker
# holds a lease on each trial it runs, and a dead worker's trials are run again by the other.
# Run it with:
#
#     pip install -e '.[cli,postgres]'
#     examples/worker_fleet.sh postgresql://postgres@127.0.0.1:5432/test
#
# The URL comes from the first argument, or else ASYNC_CONSUMER_TEST_POSTGRES_URL; add
# `?schema=name` to keep the trials in a schema of their own. PYTHON names the interpreter that
# runs the trials' script (default: python).
set -euo pipefail

url=${1:-${ASYNC_CONSUMER_TEST_POSTGRES_URL:-}}
if [[ -z $url ]]; then
    echo "usage: $0 postgresql://user@host/db  (or set ASYNC_CONSUMER_TEST_POSTGRES_URL)" >&2
    exit 2
fi
python=${PYTHON:-python}
examples=$(cd "$(dirname "$0")" && pwd)

async-consumer add --store "$url" --params "$examples/grid.jsonl"

pids=()
for name in a b; do
    # each worker's trials go to a directory of its own, as on two machines
    async-consumer worker --store "$url" -j 2 --base-dir ".async-consumer/worker-$name" -- \
        "$python" "$examples/quadratic.py" --x {x} &
    pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done

async-consumer status --store "$url"
exit "$status"
