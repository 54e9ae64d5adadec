"""An ack with one good and one bad handle: the SDK raises MQServerException whose sub_errors
name the bad handle (ReceiptHandleError); the good one is acked and never redelivered, while
an unacked control message is."""

from mq_http_sdk.mq_exception import MQServerException

from common import INSTANCE_ID, TopicMessage, client, done, expect_nothing, receive, register

mq = client()
producer = mq.get_producer(INSTANCE_ID, "T_ack")
consumer = mq.get_consumer(INSTANCE_ID, "T_ack", "GID_ack")
register(consumer)
producer.publish_message(TopicMessage("acked"))
producer.publish_message(TopicMessage("control"))
got = {m.message_body: m for m in receive(consumer.consume_message, 2)}

bad = "not-a-receipt-handle"
try:
    consumer.ack_message([got["acked"].receipt_handle, bad])
    raise AssertionError("an ack with a bad handle succeeded")
except MQServerException as e:
    assert e.type == "ReceiptHandleError", e.type
    assert e.sub_errors == [{
        "ErrorCode": "ReceiptHandleError",
        "ErrorMessage": e.sub_errors[0]["ErrorMessage"],
        "ReceiptHandle": bad,
    }], e.sub_errors
    assert e.sub_errors[0]["ErrorMessage"], "empty ErrorMessage"

# After the broker's 2 s invisibility only the unacked control message comes back.
(again,) = receive(consumer.consume_message, 1, timeout=8, wait_seconds=5)
assert again.message_body == "control" and again.consumed_times == 2
assert again.message_id == got["control"].message_id

# The superseded handle of the first delivery is refused; the new one works.
try:
    consumer.ack_message([got["control"].receipt_handle])
    raise AssertionError("a superseded handle was accepted")
except MQServerException as e:
    assert e.type in ("MessageNotExist", "ReceiptHandleError"), e.type
    assert e.sub_errors[0]["ReceiptHandle"] == got["control"].receipt_handle
consumer.ack_message([again.receipt_handle])
expect_nothing(consumer.consume_message, wait_seconds=3)

done("ack_errors")
