"""Fault injection (`mq-broker --faults`) as the official SDK sees it: the injected protocol
errors come out as the SDK's MQServerException with the service's code and a request id, a
connection closed unanswered as its MQClientNetworkException, and each rule stops after its
count. The rules are added through the admin API with the broker's admin token."""

import os
import urllib.request

from mq_http_sdk.mq_exception import MQClientNetworkException

from common import (ENDPOINT, INSTANCE_ID, TopicMessage, client, done, expect_error,
                    expect_nothing, receive)

TOKEN = os.environ["MQ_ADMIN_TOKEN"]


def admin(method, path):
    request = urllib.request.Request(ENDPOINT + path, method=method,
                                     headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200, answer.status


def fault(operation, action, count=1):
    admin("POST", "/admin/faults?operation=%s&%s&count=%d" % (operation, action, count))


mq = client()
producer = mq.get_producer(INSTANCE_ID, "T_fault")
consumer = mq.get_consumer(INSTANCE_ID, "T_fault", "GID_fault")
expect_nothing(consumer.consume_message)  # the group exists before anything is published

fault("publish", "error=Throttling")
e = expect_error("Throttling", producer.publish_message, TopicMessage("refused"))
assert "injected" in e.message, e.message
receipt = producer.publish_message(TopicMessage("stored"))  # the rule is used up

fault("consume", "error=InternalError")
expect_error("InternalError", consumer.consume_message, 1, 1)
got = receive(consumer.consume_message, 1)
assert [m.message_body for m in got] == ["stored"], [m.message_body for m in got]
assert got[0].message_id == receipt.message_id

fault("ack", "error=Throttling")
expect_error("Throttling", consumer.ack_message, [got[0].receipt_handle])
consumer.ack_message([got[0].receipt_handle])  # still valid: the refused ack changed nothing

# A connection closed before the answer: the SDK sends the request once more on a new
# connection (mq_http.py resends on BadStatusLine, a publish too), so one cut is invisible
# to the caller ...
fault("publish", "reset=true")
producer.publish_message(TopicMessage("cut once"))
# ... and two are its MQClientNetworkException.
fault("publish", "reset=true", count=2)
try:
    producer.publish_message(TopicMessage("cut twice"))
    raise AssertionError("a publish whose connections were closed unanswered succeeded")
except MQClientNetworkException:
    pass
got = receive(consumer.consume_message, 1)
assert [m.message_body for m in got] == ["cut once"], [m.message_body for m in got]
consumer.ack_message([got[0].receipt_handle])
admin("DELETE", "/admin/faults")

done("faults")
