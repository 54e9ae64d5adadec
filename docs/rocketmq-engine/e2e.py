#!/usr/bin/env python3
"""End-to-end checks of a RocketMQ 5 gRPC proxy with Apache's rocketmq-python-client.

Usage: venv/bin/python e2e.py ENDPOINT STEP [STEP...]
Steps: normal props delay fifo tx_commit tx_rollback tx_orphan invisible longpoll
Topics/groups are expected to exist (see FINDINGS.md: created with remoting.py).
"""
import sys
import time
import traceback

from rocketmq import (ClientConfiguration, Credentials, FilterExpression,
                      Message, Producer, SimpleConsumer, TransactionChecker)
from rocketmq.grpc_protocol import TransactionResolution

EP = sys.argv[1]
CFG = ClientConfiguration(EP, Credentials(), request_timeout=10)
RUN = str(int(time.time()))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def show(m):
    return dict(id=m.message_id, topic=m.topic, body=m.body, tag=m.tag, keys=m.keys,
                props=m.properties, group=m.message_group, delivery_ts=m.delivery_timestamp,
                attempt=m.delivery_attempt, born=m.born_timestamp)


def producer(topics, checker=None):
    p = Producer(CFG, topics, checker=checker)
    p.startup()
    return p


def consumer(group, topic, await_s=5, tag="*"):
    c = SimpleConsumer(CFG, group, {topic: FilterExpression(tag)}, await_duration=await_s)
    c.startup()
    return c


def receive_until(c, want_body, timeout_s=30, invisible=15, max_n=16):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        t0 = time.time()
        try:
            msgs = c.receive(max_n, invisible)
        except Exception as e:  # noqa: BLE001 - record and keep polling
            log("  receive raised after %.1fs: %r" % (time.time() - t0, e))
            continue
        log("  receive ->", len(msgs), "messages in %.1fs" % (time.time() - t0))
        for m in msgs:
            log("   ", show(m))
            if m.body == want_body:
                return m, time.time()
            c.ack(m)  # stale message from an earlier run
    return None, time.time()


def step_normal():
    t = "e2e-normal"
    p = producer([t])
    body = ("hello-" + RUN).encode()
    msg = Message(); msg.topic = t; msg.body = body
    r = p.send(msg)
    log("send ->", r.message_id, r.message_queue, r.offset, r.transaction_id)
    c = consumer("e2e-normal-group", t)
    m, _ = receive_until(c, body)
    assert m is not None, "message not received"
    c.ack(m)
    log("ack -> ok")
    p.shutdown(); c.shutdown()


def step_props():
    t = "e2e-normal"
    p = producer([t])
    body = ("props-" + RUN).encode()
    msg = Message(); msg.topic = t; msg.body = body; msg.tag = "TagA"
    msg.keys = "k1"; msg.add_property("color", "red"); msg.add_property("size", "xl")
    r = p.send(msg)
    log("send ->", r.message_id)
    # tag filter: a consumer of TagB must not see it
    cb = consumer("e2e-props-groupB", t, await_s=3, tag="TagB")
    try:
        msgs = cb.receive(16, 10)
        log("TagB consumer got", [show(x) for x in msgs])
    except Exception as e:  # noqa: BLE001
        log("TagB consumer receive raised %r" % (e,))
    cb.shutdown()
    c = consumer("e2e-props-group", t, tag="TagA")
    m, _ = receive_until(c, body)
    assert m is not None, "message not received"
    assert m.tag == "TagA" and "k1" in m.keys and m.properties.get("color") == "red", show(m)
    c.ack(m)
    log("ack -> ok")
    p.shutdown(); c.shutdown()


def step_delay():
    t = "e2e-delay"
    p = producer([t])
    c = consumer("e2e-delay-group", t, await_s=5)
    body = ("delay-" + RUN).encode()
    msg = Message(); msg.topic = t; msg.body = body
    due = int(time.time()) + 10  # this client puts the value into Timestamp.seconds
    msg.delivery_timestamp = due
    r = p.send(msg)
    sent = time.time()
    log("send (delivery in 10 s) ->", r.message_id)
    m, got = receive_until(c, body, timeout_s=60)
    assert m is not None, "delayed message not received"
    log("received %.1fs after send (due after 10.0s), delivery_ts=%s" % (got - sent, m.delivery_timestamp))
    c.ack(m)
    p.shutdown(); c.shutdown()


def step_fifo():
    t = "e2e-fifo"
    p = producer([t])
    bodies = [("fifo-%s-%d" % (RUN, i)).encode() for i in range(3)]
    for b in bodies:
        msg = Message(); msg.topic = t; msg.body = b; msg.message_group = "g1"
        r = p.send(msg)
        log("send ->", b, r.message_id, r.message_queue)
    c = consumer("e2e-fifo-group", t)
    got = []
    deadline = time.time() + 40
    while time.time() < deadline and len(got) < 3:
        try:
            msgs = c.receive(16, 10)
        except Exception as e:  # noqa: BLE001
            log("  receive raised: %r" % (e,))
            continue
        log("  receive ->", [(x.body, x.message_group) for x in msgs])
        for m in msgs:
            if m.body in bodies:
                got.append(m.body)
            c.ack(m)
    log("order received:", got)
    assert got == bodies, got
    p.shutdown(); c.shutdown()


class Checker(TransactionChecker):
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def check(self, message):
        log("CHECKER called for", show(message))
        self.calls.append(message.message_id)
        return self.answer


def tx(resolution):
    t = "e2e-tx"
    ck = Checker(TransactionResolution.COMMIT)
    p = producer([t], checker=ck)
    c = consumer("e2e-tx-group", t, await_s=3)
    body = ("tx-%s-%s" % (resolution, RUN)).encode()
    msg = Message(); msg.topic = t; msg.body = body
    trx = p.begin_transaction()
    r = p.send(msg, trx)
    log("half send ->", r.message_id, "tx id", r.transaction_id)
    try:
        msgs = c.receive(16, 10)
        log("before decision consumer got", [x.body for x in msgs])
        for m in msgs:
            c.ack(m)
    except Exception as e:  # noqa: BLE001
        log("before decision receive raised %r" % (e,))
    if resolution == "commit":
        res = trx.commit()
    elif resolution == "rollback":
        res = trx.rollback()
    else:
        res = None
    log("end transaction ->", res)
    if resolution == "commit":
        m, _ = receive_until(c, body, timeout_s=40)
        assert m is not None, "committed message not received"
        c.ack(m)
    elif resolution == "rollback":
        m, _ = receive_until(c, body, timeout_s=30)
        assert m is None, "rolled back message was delivered"
    else:
        log("waiting up to 100 s for a RecoverOrphanedTransactionCommand (checker returns COMMIT)")
        m, _ = receive_until(c, body, timeout_s=100)
        log("checker calls:", ck.calls, "received:", m and show(m))
        assert ck.calls, "no orphaned-transaction check arrived"
    p.shutdown(); c.shutdown()


def step_invisible():
    t = "e2e-normal"
    p = producer([t])
    c = consumer("e2e-inv-group", t, await_s=3)
    body = ("inv-" + RUN).encode()
    msg = Message(); msg.topic = t; msg.body = body
    p.send(msg)
    m, t0 = receive_until(c, body, invisible=30)
    assert m is not None
    log("received with 30 s invisibility, attempt", m.delivery_attempt, "; changing to 3 s")
    c.change_invisible_duration(m, 3)
    log("change_invisible_duration -> ok, new handle", m.receipt_handle[:20])
    m2, t1 = receive_until(c, body, timeout_s=25, invisible=30)
    assert m2 is not None, "message not redelivered after shortened invisibility"
    log("redelivered %.1fs after first receive, attempt %s" % (t1 - t0, m2.delivery_attempt))
    c.ack(m2)
    log("ack after redelivery -> ok")
    p.shutdown(); c.shutdown()


def step_longpoll():
    t = "e2e-empty"
    for wait in (3, 8):
        c = consumer("e2e-longpoll-group", t, await_s=wait)
        t0 = time.time()
        try:
            msgs = c.receive(16, 10)
            log("long-poll await=%ds: %d messages after %.2fs" % (wait, len(msgs), time.time() - t0))
        except Exception as e:
            log("long-poll await=%ds raised after %.2fs: %r" % (wait, time.time() - t0, e))
        c.shutdown()
    # a message that arrives during the poll should end it early
    p = producer([t])
    c = consumer("e2e-longpoll-group", t, await_s=15)
    import threading
    body = ("lp-" + RUN).encode()

    def later():
        time.sleep(3)
        msg = Message(); msg.topic = t; msg.body = body
        p.send(msg)
        log("sent during poll")
    threading.Thread(target=later).start()
    t0 = time.time()
    msgs = c.receive(16, 10)
    log("poll with message arriving after 3 s: %d messages after %.2fs" % (len(msgs), time.time() - t0))
    for m in msgs:
        c.ack(m)
    p.shutdown(); c.shutdown()


def remoting_send(topic, body, tag=None, keys=None, extra=None, queue_id=0, sys_flag=0, group="rmt-producer"):
    """Send straight to the broker's remoting port (SEND_MESSAGE=10), bypassing the proxy."""
    import uuid
    from remoting import call
    props = {"UNIQ_KEY": uuid.uuid4().hex.upper()[:32], "WAIT": "true"}
    if tag: props["TAGS"] = tag
    if keys: props["KEYS"] = keys
    props.update(extra or {})
    ps = "".join("%s\x01%s\x02" % kv for kv in props.items())
    ext = {"producerGroup": group, "topic": topic, "defaultTopic": "TBW102",
           "defaultTopicQueueNums": 8, "queueId": queue_id, "sysFlag": sys_flag,
           "bornTimestamp": int(time.time() * 1000), "flag": 0, "properties": ps,
           "unitMode": "false", "batch": "false"}
    return call(BROKER, 10, ext, body)


BROKER = "127.0.0.1:10911"
import os
LOCAL_TOPIC = os.environ.get("LOCAL_TOPIC", "e2e-normal")


def step_local_recv():
    t = LOCAL_TOPIC
    body = ("rmt-" + RUN).encode()
    log("remoting send ->", remoting_send(t, body, tag="TagA", keys="k1", extra={"color": "red"}))
    c = consumer("e2e-local-group", t)
    m, _ = receive_until(c, body)
    assert m is not None, "message not received"
    c.ack(m)
    log("ack -> ok")
    c.shutdown()


STEPS = {
    "local_recv": step_local_recv,
    "normal": step_normal, "props": step_props, "delay": step_delay, "fifo": step_fifo,
    "tx_commit": lambda: tx("commit"), "tx_rollback": lambda: tx("rollback"),
    "tx_orphan": lambda: tx("orphan"), "invisible": step_invisible, "longpoll": step_longpoll,
}

if __name__ == "__main__":
    rc = 0
    for s in sys.argv[2:]:
        log("===== STEP", s)
        try:
            STEPS[s]()
            log("===== RESULT", s, "PASS")
        except Exception as e:
            traceback.print_exc()
            log("===== RESULT", s, "FAIL:", repr(e))
            rc = 1
    sys.exit(rc)
