//! The client scenario suite on smol (`mq-async-std`, which is built on async-io).

mq_tests::scenario_tests!(mq_async_std::AsyncIoRuntime, smol::block_on);
