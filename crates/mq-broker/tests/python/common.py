"""Shared set-up of the interop scenarios: the broker under test comes from the environment
(set by tests/python_sdk.rs), the clients are the official mq-http-sdk, used the way its
samples use it."""

import hashlib
import os
import signal
import sys
import time

from mq_http_sdk.mq_client import MQClient
from mq_http_sdk.mq_exception import MQServerException
from mq_http_sdk.mq_producer import TopicMessage  # noqa: F401 (re-exported for scenarios)

# A hung scenario must not hang the test run: SIGALRM's default action ends the process.
signal.alarm(int(os.environ.get("MQ_SCENARIO_TIMEOUT", "50")))

ENDPOINT = os.environ["MQ_ENDPOINT"]
ACCESS_KEY_ID = os.environ["MQ_AK"]
ACCESS_KEY_SECRET = os.environ["MQ_SK"]
INSTANCE_ID = os.environ["MQ_INSTANCE"]


def client(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET):
    return MQClient(ENDPOINT, access_key_id, access_key_secret)


def now_ms():
    return int(round(time.time() * 1000))


def md5_upper(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def expect_error(code, fn, *args):
    """Calls fn(*args), which must raise MQServerException with this code; returns it."""
    try:
        result = fn(*args)
    except MQServerException as e:
        assert e.type == code, "expected %s, got %s: %s" % (code, e.type, e.message)
        assert e.req_id and len(e.req_id) == 24, "request id %r" % (e.req_id,)
        return e
    raise AssertionError("expected %s, got a result: %r" % (code, result))


def expect_nothing(consume, wait_seconds=1):
    """A consume (consume_message / consume_message_orderly / consume_half_message) that must
    find nothing within wait_seconds."""
    try:
        msgs = consume(16, wait_seconds)
    except MQServerException as e:
        assert e.type == "MessageNotExist", "%s: %s" % (e.type, e.message)
        return
    raise AssertionError("unexpected messages: %r" % [m.message_body for m in msgs])


def receive(consume, count, timeout=10.0, batch_size=16, wait_seconds=1):
    """Consumes until `count` messages arrived (MessageNotExist = keep waiting)."""
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        try:
            got.extend(consume(batch_size, wait_seconds))
        except MQServerException as e:
            if e.type != "MessageNotExist":
                raise
    assert len(got) == count, "expected %d messages, got %r" % (count, [m.message_body for m in got])
    return got


def register(consumer):
    """A group receives the messages published after its first consume (broker model)."""
    expect_nothing(consumer.consume_message, wait_seconds=0)


def done(name, **facts):
    detail = " ".join("%s=%s" % kv for kv in sorted(facts.items()))
    print("ok %s %s" % (name, detail))
    sys.stdout.flush()
