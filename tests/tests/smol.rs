//! The client scenario suite, and the proxy and connection-cap scenarios, on smol
//! (`mq-async-std`, which is built on async-io).

mq_tests::scenario_tests!(mq_async_std::AsyncIoRuntime, smol::block_on);
mq_tests::network_tests!(mq_async_std::AsyncIoRuntime, smol::block_on);
