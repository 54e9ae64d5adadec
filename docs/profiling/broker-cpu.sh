#!/bin/bash
# Broker CPU time per publish, or per consumed and acked message (user + system, from
# /proc/PID/stat), of one or more mq-broker builds, in interleaved rounds: BENCHMARKS.md,
# "Broker time per publish" and "Targets" (consume 16 + ack 16).
#
# usage: docs/profiling/broker-cpu.sh ROUNDS BROKER_BIN[=ARGS] [BROKER_BIN[=ARGS] ...]
#   ROUNDS      rounds; each round runs every build once, in the order given
#   BROKER_BIN  an mq-broker binary (copy builds aside to compare them); `=ARGS` adds
#               broker flags, comma-separated (e.g. `mq-broker=--consumed-retention-bytes,65536`)
# Each run starts a fresh broker and sends `mq bench publish --concurrency 16 --size 1024
# --count $COUNT` (default 200000) to one topic. With WORKLOAD=consume, each run publishes
# $COUNT messages to a topic with one group first (not measured), then measures `mq bench
# consume --concurrency 16 --batch 16` until that backlog is consumed and acked. Prints one
# line per run and, at the end, each build's median CPU µs per message and median
# messages/s. Needs target/release/mq
# (cargo build --release -p mq-cli). On 2 shared cores the numbers move by ±10% between
# runs: compare builds only within one call, and only while nothing else runs.
set -euo pipefail
ROUNDS=$1; shift
COUNT=${COUNT:-200000}; PORT=${PORT:-18096}
. "$(dirname "$0")/common.sh"
TICK=$(getconf CLK_TCK)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export MQ_ENDPOINT=http://127.0.0.1:$PORT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq "$ROUNDS"); do
    i=0
    for spec in "$@"; do
        i=$((i + 1))
        bin=${spec%%=*}; extra=()
        if [ "$spec" != "$bin" ]; then IFS=, read -r -a extra <<< "${spec#*=}"; fi
        "$bin" --listen "127.0.0.1:$PORT" "${extra[@]}" > "$OUT/log" 2>&1 &
        bpid=$!
        wait_listening "$OUT/log" 50
        if [ "${WORKLOAD:-publish}" = consume ]; then
            "$MQ" bench consume --topic T9 --group GID_9 --prefill "$COUNT" --duration 0.001s --json > /dev/null
            t0=$(cpu_ticks $bpid)
            res=$("$MQ" bench consume --topic T9 --group GID_9 --prefill 0 --concurrency 16 --batch 16 --duration 600s --json)
            t1=$(cpu_ticks $bpid)
        else
            "$MQ" bench publish --topic T9 --concurrency 16 --duration 0.001s --warmup 2000 --json > /dev/null
            t0=$(cpu_ticks $bpid)
            res=$("$MQ" bench publish --topic T9 --concurrency 16 --size 1024 --count "$COUNT" --warmup 0 --json)
            t1=$(cpu_ticks $bpid)
        fi
        kill $bpid; wait $bpid 2>/dev/null || true
        rate=$(echo "$res" | bench_field messages_per_sec | xargs printf '%.0f')
        msgs=$(echo "$res" | bench_field messages)
        us=$(python3 -c "print(round(($t1 - $t0) / $TICK * 1e6 / $msgs, 2))")
        echo "round $r build $i ($spec): $us µs per message, $rate msg/s"
        echo "$us $rate" >> "$OUT/build$i"
    done
done
i=0
for spec in "$@"; do
    i=$((i + 1))
    python3 - "$OUT/build$i" "$spec" <<'EOF'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
print(f"median {sys.argv[2]}: {statistics.median(r[0] for r in rows):.2f} µs per message, "
      f"{statistics.median(r[1] for r in rows) / 1000:.1f}k messages/s ({len(rows)} rounds)")
EOF
done
