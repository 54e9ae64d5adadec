"""A consumer with the tag filter TagA||TagB gets exactly the messages tagged TagA or TagB."""

from common import INSTANCE_ID, TopicMessage, client, done, expect_nothing, receive, register

mq = client()
producer = mq.get_producer(INSTANCE_ID, "T_tag")
filtered = mq.get_consumer(INSTANCE_ID, "T_tag", "GID_tag_ab", "TagA||TagB")
everything = mq.get_consumer(INSTANCE_ID, "T_tag", "GID_tag_all")
register(filtered)
register(everything)

sent = [("a1", "TagA"), ("c1", "TagC"), ("b1", "TagB"), ("none", ""), ("ab", "TagAB"),
        ("a2", "TagA"), ("lower", "taga")]
for body, tag in sent:
    producer.publish_message(TopicMessage(body, tag))

got = receive(filtered.consume_message, 3)
assert [m.message_body for m in got] == ["a1", "b1", "a2"], [m.message_body for m in got]
assert all(m.message_tag in ("TagA", "TagB") for m in got)
filtered.ack_message([m.receipt_handle for m in got])
expect_nothing(filtered.consume_message, wait_seconds=1)

got_all = receive(everything.consume_message, len(sent))
assert sorted(m.message_body for m in got_all) == sorted(b for b, _ in sent)
for m in got_all:
    expected_tag = dict(sent)[m.message_body]
    assert (m.message_tag or "") == expected_tag, (m.message_body, m.message_tag)
everything.ack_message([m.receipt_handle for m in got_all])

done("tags", filtered=len(got), unfiltered=len(got_all))
