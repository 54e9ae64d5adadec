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
