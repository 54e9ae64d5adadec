//! The client scenario suite on async-std (`mq-async-std`).

mq_tests::scenario_tests!(mq_async_std::AsyncIoRuntime, async_std::task::block_on);
