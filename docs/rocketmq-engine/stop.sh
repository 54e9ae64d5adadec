#!/bin/bash
cd "$(dirname "$0")"
for p in proxy broker namesrv; do [ -f $p.pid ] && kill $(cat $p.pid) 2>/dev/null; sleep 2; done
sleep 3; for p in proxy broker namesrv; do [ -f $p.pid ] && ps -p $(cat $p.pid) >/dev/null && echo "$p still running"; done; true
