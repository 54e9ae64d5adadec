"""Orderly consumption with two sharding keys: FIFO per key, and a key's next message is held
back until the delivered one is acked. Unacked ones come back in the same order."""

import time

from common import INSTANCE_ID, TopicMessage, client, done, expect_nothing, receive

mq = client()
producer = mq.get_producer(INSTANCE_ID, "T_order")
consumer = mq.get_consumer(INSTANCE_ID, "T_order", "GID_order")
orderly = consumer.consume_message_orderly
expect_nothing(orderly, wait_seconds=0)  # registers the group

for i in range(1, 4):
    for key in ("k1", "k2"):
        msg = TopicMessage("%s-%d" % (key, i), "TagOrder")
        msg.set_sharding_key(key)
        producer.publish_message(msg)


def bodies(msgs):
    return [m.message_body for m in msgs]


# One at a time: the head of each key, then both keys are blocked (for the broker's 5 s
# orderly invisibility, ample time for the checks below even on a loaded machine).
(m1,) = receive(orderly, 1, batch_size=1)
(m2,) = receive(orderly, 1, batch_size=1)
assert sorted(bodies([m1, m2])) == ["k1-1", "k2-1"], bodies([m1, m2])
assert m1.get_sharding_key() != m2.get_sharding_key()
expect_nothing(orderly, wait_seconds=1)

# Acking one key's head releases that key only, in order.
key1 = m1.get_sharding_key()
consumer.ack_message([m1.receipt_handle])
rest1 = receive(orderly, 2)
assert bodies(rest1) == ["%s-2" % key1, "%s-3" % key1], bodies(rest1)
expect_nothing(orderly, wait_seconds=1)

key2 = m2.get_sharding_key()
consumer.ack_message([m2.receipt_handle])
rest2 = receive(orderly, 2)
assert bodies(rest2) == ["%s-2" % key2, "%s-3" % key2], bodies(rest2)
consumer.ack_message([m.receipt_handle for m in rest1 + rest2])
expect_nothing(orderly, wait_seconds=1)

# Not acked: redelivered after the (5 s) orderly invisibility, same order, new handles.
for i in (1, 2):
    msg = TopicMessage("k3-%d" % i)
    msg.set_sharding_key("k3")
    producer.publish_message(msg)
first = receive(orderly, 2)
started = time.time()
assert bodies(first) == ["k3-1", "k3-2"], bodies(first)
assert first[0].next_consume_time - first[0].first_consume_time == 5000, first[0].next_consume_time
again = receive(orderly, 2, timeout=12, wait_seconds=5)
assert time.time() - started >= 4.8, "redelivered after %.2f s" % (time.time() - started)
assert bodies(again) == ["k3-1", "k3-2"], bodies(again)
assert [m.consumed_times for m in again] == [2, 2]
assert {m.receipt_handle for m in again}.isdisjoint(m.receipt_handle for m in first)
consumer.ack_message([m.receipt_handle for m in again])
expect_nothing(orderly, wait_seconds=1)

done("orderly", redelivered_after="%.2fs" % (time.time() - started))
