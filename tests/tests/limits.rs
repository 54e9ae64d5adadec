//! The service's limits that the client checks before sending (PROTOCOL §6.9): a request the
//! service would refuse is a typed `InvalidInput` error and never goes out.
//!
//! The client points at a port where nothing listens: had it sent anything, the error would
//! be a network error, not `InvalidInput`.

use futures::StreamExt;
use mq_tests::{block_on, client_builder};
use mq_tokio::mq_proto::MAX_SCHEDULE_AHEAD_MS;
use mq_tokio::mq_proto::client::EncodeError;
use mq_tokio::{
    BatchSize, Client, Error, GroupId, InstanceId, InvalidInput, MessageError, ReceiptHandle,
    TokioRuntime, TopicMessage, TopicName, WaitSeconds,
};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A loopback address nothing listens on (bound, then closed).
fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

fn client(instance: Option<&str>) -> Client {
    let mut builder = client_builder::<TokioRuntime>(&dead_endpoint());
    if let Some(instance) = instance {
        builder = builder.instance_id(InstanceId::new(instance).expect("instance"));
    }
    builder.build().expect("client")
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms")
}

#[test]
fn names_longer_than_119_characters_together_are_not_sent() {
    block_on(async {
        // 64 + 46 + 10 = 120 characters with the instance; 110 without it.
        let topic = TopicName::new("T".repeat(46)).expect("topic");
        let group = GroupId::new("G".repeat(64)).expect("group");
        let long = client(Some("MQ_INST_xy")).consumer(topic.clone(), group.clone());
        let wait = WaitSeconds::new(0).expect("wait");
        match long.receive(BatchSize::MAX, wait).await {
            Err(Error::InvalidInput(InvalidInput::Request(EncodeError::NamesTooLong(e)))) => {
                assert_eq!(e.len, 120);
            }
            other => panic!("expected NamesTooLong, got {other:?}"),
        }
        let handles = [
            ReceiptHandle::new("h-1").expect("handle"),
            ReceiptHandle::new("h-2").expect("handle"),
        ];
        let refused = long.ack(&handles).await.expect_err("ack refused");
        assert!(
            matches!(
                refused.request_error(),
                Some(Error::InvalidInput(InvalidInput::Request(
                    EncodeError::NamesTooLong(_)
                )))
            ),
            "{refused:?}"
        );
        assert_eq!(refused.not_sent(), handles, "nothing was sent");
        assert!(refused.unknown().is_empty() && refused.acked().is_empty());
        // The stream, the handler loop and the checker do not retry it: every poll would be
        // refused the same way. The stream says why once and ends.
        let mut stream = long.stream();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream answers");
        assert!(
            matches!(first, Some(Err(Error::InvalidInput(_)))),
            "{first:?}"
        );
        let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends");
        assert!(end.is_none(), "{end:?}");
        let handler = long.handle(|_m| async { Ok(()) }).spawn();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let summary = tokio::time::timeout(Duration::from_secs(10), handler.shutdown())
            .await
            .expect("the loop ends")
            .expect("summary");
        assert_eq!((summary.receive_errors, summary.handled), (1, 0));
        let checker = client(Some("MQ_INST_xy"))
            .transaction_producer(topic.clone(), group.clone())
            .spawn_checker(|_m| async { mq_tokio::Decision::Commit });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let report = tokio::time::timeout(Duration::from_secs(10), checker.shutdown())
            .await
            .expect("the checker ends");
        assert!(
            matches!(
                report,
                Err(Error::InvalidInput(InvalidInput::Request(
                    EncodeError::NamesTooLong(_)
                )))
            ),
            "{report:?}"
        );
        // Within the limit, the request goes out (and meets the closed port).
        let short = client(None).consumer(topic, group);
        let error = short
            .receive(BatchSize::MAX, wait)
            .await
            .expect_err("no broker");
        assert!(matches!(error, Error::Network(_)), "{error:?}");
    });
}

#[test]
fn a_delivery_time_more_than_40_days_ahead_is_not_sent() {
    block_on(async {
        let producer = client(None).producer(TopicName::new("T").expect("topic"));
        let at = now_ms() + MAX_SCHEDULE_AHEAD_MS + 60_000;
        let far = TopicMessage::new("far")
            .expect("message")
            .with_start_deliver_time(at);
        match producer.publish(&far).await {
            Err(Error::InvalidInput(InvalidInput::Message(MessageError::ScheduledTooFar {
                at_ms,
                max_ahead_ms,
                ..
            }))) => assert_eq!((at_ms, max_ahead_ms), (at, MAX_SCHEDULE_AHEAD_MS)),
            other => panic!("expected ScheduledTooFar, got {other:?}"),
        }
        // A delayed body over 64 KB is refused the same way.
        let big = TopicMessage::new("x".repeat(64 * 1024 + 1))
            .expect("message")
            .with_start_deliver_time(now_ms() + 60_000);
        match producer.publish(&big).await {
            Err(Error::InvalidInput(InvalidInput::Message(MessageError::BodyTooLarge {
                max,
                ..
            }))) => assert_eq!(max, 64 * 1024),
            other => panic!("expected BodyTooLarge, got {other:?}"),
        }
        // 39 days ahead goes out (and meets the closed port).
        let near = TopicMessage::new("near")
            .expect("message")
            .with_start_deliver_time(now_ms() + MAX_SCHEDULE_AHEAD_MS - 86_400_000);
        let error = producer.publish(&near).await.expect_err("no broker");
        assert!(matches!(error, Error::Network(_)), "{error:?}");
    });
}
