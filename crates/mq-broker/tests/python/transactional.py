"""Transactional messages: four half messages (immunity 10 s); one committed at once with the
publish handle; in the check loop one is committed, one rolled back, and one left unknown at
its first check and committed at its second. A consumer sees exactly the committed ones."""

import time

from mq_http_sdk.mq_exception import MQServerException

from common import INSTANCE_ID, TopicMessage, client, done, expect_nothing, receive, register

mq = client()
trans_producer = mq.get_trans_producer(INSTANCE_ID, "T_tx", "GID_tx_producer")
consumer = mq.get_consumer(INSTANCE_ID, "T_tx", "GID_tx_consumer")
register(consumer)

publish_handles = {}
published_at = time.time()
for i in range(4):
    msg = TopicMessage("tx-%d" % i, "TagTx")
    msg.put_property("n", str(i))
    msg.set_trans_check_immunity_time(10)
    receipt = trans_producer.publish_message(msg)
    assert receipt.receipt_handle, "a transactional publish returns a handle"
    publish_handles[msg.message_body] = receipt.receipt_handle

# Committed with the publish handle, before any check.
trans_producer.commit(publish_handles["tx-0"])
(first,) = receive(consumer.consume_message, 1, timeout=3)
assert first.message_body == "tx-0" and first.get_property("n") == "0", first.message_body
consumer.ack_message([first.receipt_handle])
# Still half messages: nothing else reaches consumers.
expect_nothing(consumer.consume_message, wait_seconds=1)

checks = {}
first_check_at = None
resolved = set()
deadline = published_at + 30
while len(resolved) < 3 and time.time() < deadline:
    try:
        half = trans_producer.consume_half_message(16, 3)
    except MQServerException as e:
        assert e.type == "MessageNotExist", e.type
        continue
    for m in half:
        if first_check_at is None:
            first_check_at = time.time()
        body = m.message_body
        assert body in ("tx-1", "tx-2", "tx-3"), "offered for a check: %s" % body
        assert body not in resolved, "%s offered again after its decision" % body
        assert m.get_trans_check_immunity_time() == 10, m.properties
        checks[body] = checks.get(body, 0) + 1
        assert m.consumed_times == checks[body], (body, m.consumed_times, checks[body])
        if body == "tx-1":
            # The publish handle is only valid during the immunity time.
            try:
                trans_producer.commit(publish_handles["tx-1"])
                raise AssertionError("commit with an expired publish handle succeeded")
            except MQServerException as e:
                assert e.type in ("MessageNotExist", "ReceiptHandleError"), e.type
            trans_producer.commit(m.receipt_handle)
            resolved.add(body)
        elif body == "tx-2":
            trans_producer.rollback(m.receipt_handle)
            resolved.add(body)
        elif checks[body] >= 2:
            trans_producer.commit(m.receipt_handle)
            resolved.add(body)
        # tx-3 at its first check: no decision (unknown), so it is checked again.

assert resolved == {"tx-1", "tx-2", "tx-3"}, (resolved, checks)
assert first_check_at - published_at >= 9.5, "checked %.2f s after publish" % (first_check_at - published_at)
assert checks == {"tx-1": 1, "tx-2": 1, "tx-3": 2}, checks

got = receive(consumer.consume_message, 2, timeout=5)
assert sorted(m.message_body for m in got) == ["tx-1", "tx-3"], [m.message_body for m in got]
consumer.ack_message([m.receipt_handle for m in got])
# The rolled-back one never arrives, and nothing is left to check.
expect_nothing(consumer.consume_message, wait_seconds=2)
expect_nothing(trans_producer.consume_half_message, wait_seconds=1)

done("transactional", first_check_after="%.2fs" % (first_check_at - published_at),
     total="%.2fs" % (time.time() - published_at))
