use mq_broker::{Broker, ServerConfig};
#[tokio::test(flavor = "current_thread")]
async fn probe() {
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let broker = Broker::start(config).await.unwrap();
    eprintln!("started {}", broker.endpoint());
    assert_eq!(broker.stats().published, 0);
    eprintln!("stats ok");
    tokio::time::timeout(std::time::Duration::from_secs(5), broker.shutdown()).await.expect("shutdown hangs");
    eprintln!("shutdown ok");
}
