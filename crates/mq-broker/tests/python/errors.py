"""Errors the SDK surfaces: a wrong secret (SignatureDoesNotMatch), an unknown key
(InvalidAccessKeyId), a topic that is not declared (TopicNotExist), a key scoped to another
instance (AccessDenied)."""

import os

from common import INSTANCE_ID, TopicMessage, client, done, expect_error

wrong_secret = client(access_key_secret="not-the-secret")
expect_error("SignatureDoesNotMatch",
             wrong_secret.get_producer(INSTANCE_ID, "T_err").publish_message, TopicMessage("x"))
expect_error("SignatureDoesNotMatch",
             wrong_secret.get_consumer(INSTANCE_ID, "T_err", "GID_err").consume_message, 1, 1)
expect_error("SignatureDoesNotMatch",
             wrong_secret.get_consumer(INSTANCE_ID, "T_err", "GID_err").ack_message, ["h"])

unknown_key = client(access_key_id="unknown-key-id")
expect_error("InvalidAccessKeyId",
             unknown_key.get_producer(INSTANCE_ID, "T_err").publish_message, TopicMessage("x"))

mq = client()
expect_error("TopicNotExist", mq.get_producer(INSTANCE_ID, "T_missing").publish_message,
             TopicMessage("x"))
expect_error("TopicNotExist",
             mq.get_consumer(INSTANCE_ID, "T_missing", "GID_err").consume_message, 1, 1)
expect_error("TopicNotExist",
             mq.get_trans_producer(INSTANCE_ID, "T_missing", "GID_err").consume_half_message, 1, 1)
# Declared in one instance only.
expect_error("TopicNotExist", mq.get_producer("MQ_INST_other", "T_tag").publish_message,
             TopicMessage("x"))

scoped = client(os.environ["MQ_SCOPED_AK"], os.environ["MQ_SCOPED_SK"])
expect_error("AccessDenied", scoped.get_producer("", "T_err").publish_message, TopicMessage("x"))
receipt = scoped.get_producer(INSTANCE_ID, "T_err").publish_message(TopicMessage("scoped ok"))
assert receipt.message_id

# Out-of-range arguments the SDK passes through unchecked.
expect_error("InvalidArgument",
             mq.get_consumer(INSTANCE_ID, "T_err", "GID_err").consume_message, 17, 1)
expect_error("InvalidArgument",
             mq.get_consumer(INSTANCE_ID, "T_err", "GID_err").consume_message, 1, 31)

done("errors")
