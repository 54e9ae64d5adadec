//! The client scenario suite, and the proxy and connection-cap scenarios, on async-std (`mq-async-std`).

mq_tests::scenario_tests!(mq_async_std::AsyncIoRuntime, async_std::task::block_on);
mq_tests::network_tests!(mq_async_std::AsyncIoRuntime, async_std::task::block_on);
