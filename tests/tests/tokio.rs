//! The client scenario suite, and the proxy and connection-cap scenarios, on tokio (`mq-tokio`).

fn block_on<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f);
}

mq_tests::scenario_tests!(mq_tokio::TokioRuntime, block_on);
mq_tests::network_tests!(mq_tokio::TokioRuntime, block_on);

/// A client built inside one tokio runtime keeps working on another once the first is gone
/// (a `static` client shared by `#[tokio::test]`s, each on its own runtime): its tasks go to
/// the runtime current when they are spawned, not to the one current at `build()`.
#[test]
fn a_client_outlives_the_runtime_it_was_built_on() {
    let broker = mq_tests::TestBroker::start();
    let topic: mq_tokio::TopicName = "outlives".parse().expect("topic");
    let message = mq_tokio::TopicMessage::new("hello").expect("message");
    let runtime = || tokio::runtime::Runtime::new().expect("tokio runtime");
    let first = runtime();
    let client = first.block_on(async {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        client
            .producer(topic.clone())
            .publish(&message)
            .await
            .expect("publish on the runtime the client was built on");
        client
    });
    drop(first);
    runtime().block_on(async {
        client
            .producer(topic)
            .publish(&message)
            .await
            .expect("publish on a second runtime after the first ended");
    });
}
