"""Publish / consume / ack with an instance id and with the default instance (""): the body
with XML-special and non-ASCII characters, the tag, the message key and the properties
round-trip, and the MD5s match."""

import time

from common import (INSTANCE_ID, TopicMessage, client, done, expect_nothing, md5_upper,
                    now_ms, receive, register)

BODY = "<xml attr=\"1\"> & 'quotes' ]]> <![CDATA[x]]> — ünïcødé 中文 🚀\nline two\ttabbed"

mq = client()
pairs = []
for instance in (INSTANCE_ID, ""):
    producer = mq.get_producer(instance, "T_basic")
    consumer = mq.get_consumer(instance, "T_basic", "GID_basic")
    register(consumer)
    pairs.append((instance, producer, consumer))

published = {}
started = now_ms()
for instance, producer, _ in pairs:
    msg = TopicMessage("%s [%s]" % (BODY, instance or "default"), "TagBasic")
    msg.set_message_key("key-%s" % (instance or "default"))
    msg.put_property("color", "red")
    msg.put_property("n", "42")
    receipt = producer.publish_message(msg)
    assert len(receipt.message_id) > 0
    assert receipt.message_body_md5 == md5_upper(msg.message_body), receipt.message_body_md5
    assert receipt.receipt_handle == "", "normal publish has no handle"
    published[instance] = (msg, receipt)

for instance, _, consumer in pairs:
    msg, receipt = published[instance]
    # Each instance is its own namespace: exactly one message, the one published there.
    (got,) = receive(consumer.consume_message, 1)
    assert got.message_body == msg.message_body, repr(got.message_body)
    assert got.message_id == receipt.message_id
    assert got.message_body_md5 == receipt.message_body_md5 == md5_upper(got.message_body)
    assert got.message_tag == "TagBasic", got.message_tag
    assert got.get_message_key() == "key-%s" % (instance or "default"), got.properties
    assert got.get_property("color") == "red" and got.get_property("n") == "42", got.properties
    assert got.consumed_times == 1
    assert started - 1000 <= got.publish_time <= now_ms() + 1000, got.publish_time
    assert got.first_consume_time >= got.publish_time
    # This broker hides a delivered message for 2 s.
    assert got.next_consume_time - got.first_consume_time == 2000, got.next_consume_time
    consumer.ack_message([got.receipt_handle])

# Acked: nothing comes back, even after the 2 s invisibility of this broker.
time.sleep(0.5)
for instance, _, consumer in pairs:
    expect_nothing(consumer.consume_message, wait_seconds=2)

done("basic", instances=len(pairs))
