//! Orphaned-transaction checks through the gateway, against a fake engine.
//!
//! The real engine of the other gateway tests (rocketmq-rust 1.0.0) never sends checks, so
//! this test stands up a gRPC v2 `MessagingService` of its own (bindings from
//! `rocketmq-proxy-core`, as the gateway's) that does what Apache RocketMQ 5's proxy does:
//! once a producer's Telemetry stream declares a topic (`Settings.publishing`), it sends a
//! `RecoverOrphanedTransactionCommand` for every undecided half message of that topic.
//!
//! Asserted, through the HTTP client: a transactional publish makes the gateway open the
//! stream and declare the topic; a half-message poll gets the check with a transaction
//! handle, the message's body and properties, and `ConsumedTimes` 1 (2 when asked again);
//! committing that handle sends `EndTransaction` with the right message and transaction
//! ids; a decided transaction is not offered again; a poll with no check waits its time and
//! finds nothing.
//!
//! The same fake engine never answers a receive (`ReceiveMessage`): a long poll through the
//! gateway still answers within its wait plus the gateway's margin, under the official SDKs'
//! socket timeout.

use mq_broker::config::{BackendConfig, HandleKey, RocketMqConfig};
use mq_broker::{Credential, ServerConfig};
use mq_client::{TopicMessage, TransCheckImmunity};
use mq_tests::scenarios::{self, batch, group, topic, wait};
use mq_tests::{TEST_AK, TEST_SK, TestBroker};
use mq_tokio::TokioRuntime;
use rocketmq_proxy_core::proto::v2 as pb;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// What the fake engine saw.
#[derive(Default)]
struct Seen {
    /// Transactional sends: (topic, message id, transaction id, message).
    halves: Vec<(String, String, String, pb::Message)>,
    /// Topics declared by producers' settings.
    declared: Vec<String>,
    /// Decisions: (message id, transaction id, resolution).
    decisions: Vec<(String, String, i32)>,
    /// Receives asked for (none is ever answered).
    receives: usize,
}

#[derive(Clone, Default)]
struct FakeEngine {
    seen: Arc<Mutex<Seen>>,
    /// When set, the first receive answers after this long with one message tagged
    /// `other`, and acks are never answered (an engine that hangs on the skip of a
    /// filtered message).
    filtered_after: Option<Duration>,
}

type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn ok() -> Option<pb::Status> {
    Some(pb::Status {
        code: pb::Code::Ok as i32,
        message: "OK".into(),
    })
}

#[tonic::async_trait]
impl pb::messaging_service_server::MessagingService for FakeEngine {
    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        let topic = request.into_inner().topic;
        Ok(Response::new(pb::QueryRouteResponse {
            status: ok(),
            message_queues: vec![pb::MessageQueue {
                topic,
                id: 0,
                permission: pb::Permission::ReadWrite as i32,
                broker: Some(pb::Broker {
                    name: "fake".into(),
                    id: 0,
                    endpoints: None,
                }),
                accept_message_types: vec![],
            }],
        }))
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("heartbeat"))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let mut entries = Vec::new();
        for m in request.into_inner().messages {
            let system = m.system_properties.clone().unwrap_or_default();
            let topic = m.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
            let transaction_id = format!("TX-{}", system.message_id);
            if system.message_type == pb::MessageType::Transaction as i32 {
                self.seen.lock().unwrap().halves.push((
                    topic,
                    system.message_id.clone(),
                    transaction_id.clone(),
                    m,
                ));
            }
            entries.push(pb::SendResultEntry {
                status: ok(),
                message_id: system.message_id,
                transaction_id,
                offset: 0,
                recall_handle: String::new(),
            });
        }
        Ok(Response::new(pb::SendMessageResponse {
            status: ok(),
            entries,
        }))
    }

    async fn query_assignment(
        &self,
        _: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, Status> {
        Err(Status::unimplemented("query_assignment"))
    }

    type ReceiveMessageStream = Stream<pb::ReceiveMessageResponse>;

    /// Never answers: an engine that holds its receives (hung, or running them one at a
    /// time behind others).
    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        let first = {
            let mut seen = self.seen.lock().unwrap();
            seen.receives += 1;
            seen.receives == 1
        };
        let Some(after) = self.filtered_after.filter(|_| first) else {
            return std::future::pending().await;
        };
        tokio::time::sleep(after).await;
        let topic = request.into_inner().message_queue.and_then(|q| q.topic);
        let message = pb::Message {
            topic,
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                tag: Some("other".into()),
                message_id: "0A0000000000000000000000000000AA".into(),
                receipt_handle: Some("engine-handle".into()),
                ..Default::default()
            }),
            body: b"filtered out".to_vec().into(),
        };
        let answers = [
            pb::receive_message_response::Content::Message(message),
            pb::receive_message_response::Content::Status(ok().expect("status")),
        ]
        .map(|content| {
            Ok(pb::ReceiveMessageResponse {
                content: Some(content),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(answers))))
    }

    async fn ack_message(
        &self,
        _: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, Status> {
        if self.filtered_after.is_some() {
            return std::future::pending().await;
        }
        Err(Status::unimplemented("ack_message"))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, Status> {
        Err(Status::unimplemented("forward"))
    }

    type PullMessageStream = Stream<pb::PullMessageResponse>;

    async fn pull_message(
        &self,
        _: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        Err(Status::unimplemented("pull_message"))
    }

    async fn update_offset(
        &self,
        _: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, Status> {
        Err(Status::unimplemented("update_offset"))
    }

    async fn get_offset(
        &self,
        _: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, Status> {
        Err(Status::unimplemented("get_offset"))
    }

    async fn query_offset(
        &self,
        _: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, Status> {
        Err(Status::unimplemented("query_offset"))
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        let r = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        seen.decisions
            .push((r.message_id.clone(), r.transaction_id.clone(), r.resolution));
        seen.halves.retain(|(_, id, _, _)| *id != r.message_id);
        Ok(Response::new(pb::EndTransactionResponse { status: ok() }))
    }

    type TelemetryStream = Stream<pb::TelemetryCommand>;

    /// Answers each settings command with a check for every undecided half message of the
    /// declared topics (Apache RocketMQ 5 asks again every check interval; here, on every
    /// settings command).
    async fn telemetry(
        &self,
        request: Request<Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(command)) = inbound.message().await {
                let Some(pb::telemetry_command::Command::Settings(settings)) = command.command
                else {
                    continue;
                };
                let Some(pb::settings::PubSub::Publishing(publishing)) = settings.pub_sub else {
                    continue;
                };
                let checks: Vec<pb::TelemetryCommand> = {
                    let mut seen = seen.lock().unwrap();
                    let topics: Vec<String> =
                        publishing.topics.iter().map(|t| t.name.clone()).collect();
                    seen.declared.extend(topics.iter().cloned());
                    seen.halves
                        .iter()
                        .filter(|(t, _, _, _)| topics.contains(t))
                        .map(|(_, _, tx_id, m)| pb::TelemetryCommand {
                            status: ok(),
                            command: Some(
                                pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                                    pb::RecoverOrphanedTransactionCommand {
                                        message: Some(m.clone()),
                                        transaction_id: tx_id.clone(),
                                    },
                                ),
                            ),
                        })
                        .collect()
                };
                for check in checks {
                    if tx.send(Ok(check)).await.is_err() {
                        return;
                    }
                }
            }
        });
        let outbound = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn notify_client_termination(
        &self,
        _: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, Status> {
        Err(Status::unimplemented("notify_client_termination"))
    }

    async fn change_invisible_duration(
        &self,
        _: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        Err(Status::unimplemented("change_invisible_duration"))
    }

    async fn recall_message(
        &self,
        _: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, Status> {
        Err(Status::unimplemented("recall_message"))
    }

    async fn sync_lite_subscription(
        &self,
        _: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<pb::SyncLiteSubscriptionResponse>, Status> {
        Err(Status::unimplemented("sync_lite_subscription"))
    }
}

/// The fake engine (served on `runtime`) and a gateway onto it.
fn gateway_onto(fake: &FakeEngine, runtime: &tokio::runtime::Runtime) -> TestBroker {
    let incoming = runtime
        .block_on(async {
            tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        })
        .expect("bind the fake engine");
    let engine_addr = incoming.local_addr().expect("address");
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(pb::messaging_service_server::MessagingServiceServer::new(
                fake.clone(),
            ))
            .serve_with_incoming(incoming),
    );
    let mut rocketmq: RocketMqConfig = format!("rocketmq://{engine_addr}").parse().expect("url");
    rocketmq.handle_key =
        Some(HandleKey::from_bytes(b"gateway-checks-handle-key-32-byt".to_vec()).expect("key"));
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: vec![Credential::new(TEST_AK, TEST_SK)],
        backend: BackendConfig::RocketMq(rocketmq),
        ..ServerConfig::default()
    };
    config.core.half_check_interval_ms = 5_000;
    TestBroker::start_with(config)
}

/// A client of `gateway` that does not retry: a poll's answer time is the gateway's alone.
fn client_without_retries(gateway: &TestBroker) -> mq_client::Client {
    mq_tests::client_builder::<TokioRuntime>(&gateway.endpoint())
        .retry(mq_client::RetryConfig::disabled())
        .build()
        .expect("client")
}

fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A long poll answers within its wait plus the gateway's 2 s margin, though every receive
/// it asks the engine for goes unanswered: each 1 s slice of the wait may take the engine's
/// 5 s minimum long poll plus the margin, but not past the poll's own answer time (a 30 s
/// poll answered after 35 s, past the official SDKs' 33 s socket timeout).
#[test]
fn a_long_poll_answers_in_time_when_the_engine_holds_its_receives() {
    let fake = FakeEngine::default();
    let server_rt = server_runtime();
    let gateway = gateway_onto(&fake, &server_rt);
    mq_tests::block_on(async {
        let client = client_without_retries(&gateway);
        let consumer = client.consumer(topic("gw_held"), group("GID_held"));
        let started = Instant::now();
        let found = consumer.receive(batch(1), wait(10)).await.expect("poll");
        let took = started.elapsed();
        assert!(found.is_empty());
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_millis(12_700),
            "a 10 s poll answered after {took:?}"
        );
    });
    assert!(
        fake.seen.lock().unwrap().receives >= 2,
        "the wait was sliced"
    );
}

/// A message the poll's tag filter skips near the end of its wait, whose skip (an ack on
/// the engine) hangs, does not hold the answer past the poll's answer time: the skip waited
/// for the engine's 5 s call timeout (a 6 s poll answered after ≈ 10.5 s).
#[test]
fn a_hung_skip_of_a_filtered_message_does_not_hold_the_answer() {
    let fake = FakeEngine {
        filtered_after: Some(Duration::from_millis(5_500)),
        ..FakeEngine::default()
    };
    let server_rt = server_runtime();
    let gateway = gateway_onto(&fake, &server_rt);
    mq_tests::block_on(async {
        let client = client_without_retries(&gateway);
        let consumer = client
            .consumer(topic("gw_skip"), group("GID_skip"))
            .with_tag_filter("wanted".parse().expect("filter"));
        let started = Instant::now();
        let found = consumer.receive(batch(1), wait(6)).await.expect("poll");
        let took = started.elapsed();
        assert!(found.is_empty(), "{found:?}");
        assert!(
            took < Duration::from_millis(8_700),
            "a 6 s poll answered after {took:?}"
        );
    });
    assert!(fake.seen.lock().unwrap().receives >= 1);
}

#[test]
fn half_message_polls_get_the_engines_checks() {
    let fake = FakeEngine::default();
    let server_rt = server_runtime();
    let gateway = gateway_onto(&fake, &server_rt);

    mq_tests::block_on(async {
        let client = scenarios::client::<TokioRuntime>(&gateway);
        let t = topic("gw_checks");
        let tx = client.transaction_producer(t.clone(), group("GID_checks"));

        // Nothing undecided yet: the poll waits its time and finds nothing.
        let started = Instant::now();
        assert!(
            tx.consume_half(batch(16), wait(1))
                .await
                .expect("poll")
                .is_empty()
        );
        assert!(started.elapsed() >= Duration::from_millis(900));

        let msg = TopicMessage::new("decide me")
            .and_then(|m| m.with_property("order", "42"))
            .expect("message")
            .with_trans_check_immunity(TransCheckImmunity::new(10).expect("immunity"));
        let receipt = tx.publish(&msg).await.expect("publish half");

        // The engine asks once the stream declares the topic (the publish did; the next
        // poll's settings ask again).
        let mut offered = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while offered.len() < 2 && Instant::now() < deadline {
            offered.extend(tx.consume_half(batch(16), wait(1)).await.expect("poll"));
            // A new topic in the settings makes the fake engine ask again.
            let other = topic("gw_checks_other");
            let _ = client
                .transaction_producer(other, group("GID_checks"))
                .consume_half(batch(1), wait(0))
                .await;
        }
        assert!(offered.len() >= 2, "offered {} times", offered.len());
        let first = &offered[0];
        assert_eq!(first.message_id, receipt.message_id);
        assert_eq!(first.body, "decide me");
        assert_eq!(first.property("order"), Some("42"));
        assert_eq!(first.consumed_times, 1);
        assert_eq!(offered[1].consumed_times, 2, "asked again");
        assert!(first.next_consume_time >= first.first_consume_time + 5_000);

        tx.commit(&offered[1].receipt_handle).await.expect("commit");
        {
            let seen = fake.seen.lock().unwrap();
            assert!(
                seen.declared.contains(&t.as_str().to_owned()),
                "the topic was declared"
            );
            let (message_id, transaction_id, resolution) = seen.decisions.last().expect("decided");
            assert_eq!(
                transaction_id,
                &format!("TX-{}", receipt.message_id.as_str())
            );
            assert_eq!(message_id, receipt.message_id.as_str());
            assert_eq!(*resolution, pb::TransactionResolution::Commit as i32);
        }
        // Decided: not offered again.
        assert!(
            tx.consume_half(batch(16), wait(1))
                .await
                .expect("poll")
                .is_empty()
        );
    });
}
