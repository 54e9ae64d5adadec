#!/bin/bash
# Instructions (callgrind Ir, user space, exact) of an mq-broker process per message, over
# a measured phase only: BENCHMARKS.md, "Broker instructions per request".
#
# usage: docs/profiling/broker-instructions.sh BROKER_BIN consume|publish [N] [PORT]
#   BROKER_BIN  an mq-broker binary (cargo build --release -p mq-broker; copy it aside to
#               compare builds)
#   consume     consume 16 + ack 16 of an N-message backlog (published first, not counted)
#   publish     N publishes of 1 KiB at 16 in flight (after 500 of warm-up, not counted)
# Needs valgrind and target/release/mq (cargo build --release -p mq-cli). Prints the
# messages measured and the broker's instructions per message; the callgrind profile is
# left in target/profiling/ for callgrind_annotate.
# With CACHE=1 (publish only): simulated caches, and a warm-up of 16,000 messages first, so
# that the topic holds its 16 MiB of unheld messages and every publish trims one; prints
# the data reads and writes that miss the last-level cache per message as well.
set -euo pipefail
BIN=$1; W=$2; N=${3:-10000}; PORT=${4:-18095}
SIM=(); WARM=500
if [ "${CACHE:-0}" = 1 ]; then SIM=(--cache-sim=yes); WARM=16000; fi
. "$(dirname "$0")/common.sh"
OUT=$ROOT/target/profiling/broker-$W.$PORT
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"*
valgrind --tool=callgrind "${SIM[@]}" --instr-atstart=no --callgrind-out-file="$OUT" "$BIN" \
    --listen "127.0.0.1:$PORT" > "$OUT.log" 2>&1 &
BPID=$!
trap 'kill $BPID 2>/dev/null || true' EXIT
wait_listening "$OUT.log" 300
export MQ_ENDPOINT=http://127.0.0.1:$PORT
if [ "$W" = consume ]; then
    "$MQ" bench consume --topic T9 --group GID_9 --prefill "$N" --duration 0.001s --json > /dev/null
    ARGS=(consume --topic T9 --group GID_9 --prefill 0 --concurrency 16 --batch 16 --duration 600s)
else
    "$MQ" bench publish --topic T9 --concurrency 16 --duration 0.001s --warmup "$WARM" --json > /dev/null
    ARGS=(publish --topic T9 --concurrency 16 --size 1024 --count "$N" --warmup 0)
fi
callgrind_control -i on $BPID > /dev/null
RES=$("$MQ" bench "${ARGS[@]}" --json)
callgrind_control -i off $BPID > /dev/null
callgrind_control -d $BPID > /dev/null
kill $BPID; wait $BPID 2>/dev/null || true
MSGS=$(echo "$RES" | bench_field messages)
IR=$(cat "$OUT".* | grep -h '^totals:' | awk '{s+=$2} END {print s}')
echo "$W: $MSGS messages, $((IR / MSGS)) broker instructions per message (profile: $OUT.*)"
if [ "${CACHE:-0}" = 1 ]; then
    # Columns: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
    cat "$OUT".* | grep -h '^totals:' | awk -v n="$MSGS" \
        '{r+=$9; w+=$10} END {printf "last-level misses per message: %.1f reads, %.1f writes\n", r/n, w/n}'
fi
