# Shared by the scripts of docs/profiling (sourced): the mq binary, the development
# credentials, and helpers to wait for a broker and read `mq bench --json` output.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MQ=$ROOT/target/release/mq
export ALIBABA_CLOUD_ACCESS_KEY_ID=mq-dev-access-key ALIBABA_CLOUD_ACCESS_KEY_SECRET=mq-dev-secret

# wait_listening LOG TRIES: until the broker writing LOG prints its banner (0.2 s a try).
wait_listening() {
    for _ in $(seq "$2"); do grep -q 'listening on' "$1" && return; sleep 0.2; done
}

# bench_field FIELD: the field of the `mq bench … --json` document on stdin.
bench_field() {
    python3 -c "import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index('{'):])['$1'])"
}
