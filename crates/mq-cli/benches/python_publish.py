"""Client CPU per publish of the official Python SDK (mq-http-sdk): the Python side of the
system suite's `client-cpu` section (crates/mq-cli/benches/suite.rs), which runs it with the
interop virtualenv's interpreter against the same broker as `mq bench`.

usage: python python_publish.py THREADS COUNT WARMUP SIZE TIME_LIMIT_SECS
environment: MQ_ENDPOINT (http://IP:PORT), MQ_AK, MQ_SK, MQ_TOPIC

THREADS threads, each with its own MQClient and producer, as the SDK's samples have a user
do (an MQClient holds one HTTP connection, which threads must not share), publish messages
of SIZE bytes: first WARMUP publishes in all (not counted), then, once every thread is warm,
COUNT successful publishes in all (a failed publish is counted as an error and made again,
after 20 ms). The process's CPU time (user + system, all threads: time.process_time(),
CLOCK_PROCESS_CPUTIME_ID on Linux) is read when every thread is warm and after the last
publish. Prints one JSON object:
{"published", "errors", "cpu_secs", "wall_secs", "first_error", "sdk_version"}. Exits 1 when the warm-up
fails or COUNT publishes did not succeed within TIME_LIMIT_SECS.
"""

import json
import os
import sys
import threading
import time

from mq_http_sdk import pkg_info
from mq_http_sdk.mq_client import MQClient
from mq_http_sdk.mq_producer import TopicMessage

ERROR_PAUSE = 0.02


def shares(total, parts):
    """total split into parts as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main():
    threads, count, warmup, size, limit = (int(a) for a in sys.argv[1:6])
    endpoint, ak, sk = os.environ["MQ_ENDPOINT"], os.environ["MQ_AK"], os.environ["MQ_SK"]
    topic = os.environ["MQ_TOPIC"]
    body = "x" * size
    warm = threading.Barrier(threads + 1)
    go = threading.Barrier(threads + 1)
    deadline = time.monotonic() + limit
    lock = threading.Lock()
    outcome = {"published": 0, "errors": 0, "first_error": None, "warmup_failed": None}

    def error(e):
        with lock:
            outcome["errors"] += 1
            if outcome["first_error"] is None:
                outcome["first_error"] = "%s: %s" % (type(e).__name__, e)

    def worker(warmup_share, count_share):
        producer = MQClient(endpoint, ak, sk).get_producer("", topic)
        message = TopicMessage(body)
        try:
            for _ in range(warmup_share):
                producer.publish_message(message)
        except Exception as e:  # noqa: BLE001 (any failure ends the warm-up)
            with lock:
                outcome["warmup_failed"] = "%s: %s" % (type(e).__name__, e)
        warm.wait()
        go.wait()
        if outcome["warmup_failed"] is not None:
            return
        published = 0
        while published < count_share and time.monotonic() < deadline:
            try:
                producer.publish_message(message)
                published += 1
            except Exception as e:  # noqa: BLE001 (counted, then published again)
                error(e)
                time.sleep(ERROR_PAUSE)
        with lock:
            outcome["published"] += published

    workers = [
        threading.Thread(target=worker, args=(w, c), daemon=True)
        for w, c in zip(shares(warmup, threads), shares(count, threads))
    ]
    for w in workers:
        w.start()
    warm.wait()
    cpu_before, wall_before = time.process_time(), time.monotonic()
    go.wait()
    for w in workers:
        w.join()
    cpu_secs = time.process_time() - cpu_before
    wall_secs = time.monotonic() - wall_before
    if outcome["warmup_failed"] is not None:
        print("warm-up failed: %s" % outcome["warmup_failed"], file=sys.stderr)
        return 1
    print(json.dumps({
        "published": outcome["published"],
        "errors": outcome["errors"],
        "cpu_secs": cpu_secs,
        "wall_secs": wall_secs,
        "first_error": outcome["first_error"],
        "sdk_version": pkg_info.version,
    }))
    sys.stdout.flush()
    if outcome["published"] < count:
        print("%d of %d publishes succeeded within %d s" % (outcome["published"], count, limit),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
