#!/bin/bash
# Starts namesrv, broker and proxy (cluster mode) in network namespace mqlab, loopback only.
set -e
B=/root/.cache/mq-http-rs/engine/bin
cd "$(dirname "$0")"
export ROCKETMQ_HOME="$PWD"
N="ip netns exec mqlab"
$N $B/rocketmq-namesrv-rust --bindAddress 127.0.0.1 --listenPort 9876 > namesrv.log 2>&1 & echo $! > namesrv.pid
sleep 3
$N $B/rocketmq-broker-rust -c broker.toml -n 127.0.0.1:9876 > broker.log 2>&1 & echo $! > broker.pid
sleep 6
$N $B/rocketmq-proxy-rust -c proxy.toml > proxy.log 2>&1 & echo $! > proxy.pid
sleep 4
$N ss -ltnp
