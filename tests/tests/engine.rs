//! The RocketMQ engine harness (`mq_tests::engine`) against the real engine: it starts in
//! cluster mode on 127.0.0.1, survives a SIGKILLed broker, name server and proxy (each
//! restarted with the same ports and store), and leaves nothing behind.
//!
//! Needs the engine binaries (`cargo xtask engine-install`); without them the test fails
//! with that instruction.

use mq_tests::engine::{Component, RocketMqEngine};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn fast_port(engine: &RocketMqEngine) -> SocketAddr {
    let mut fast = engine.broker_addr();
    fast.set_port(fast.port() - 2);
    fast
}

fn assert_all_accept(engine: &RocketMqEngine, when: &str) {
    for (what, addr) in [
        ("name server", engine.namesrv_addr()),
        ("broker", engine.broker_addr()),
        ("broker fast port", fast_port(engine)),
        ("proxy", engine.proxy_endpoint()),
    ] {
        assert!(
            accepts(addr),
            "{when}: {what} {addr} refuses connections\n{}",
            engine.log_tail(Component::Broker, 20)
        );
    }
}

/// The apparent size of the files under `dir` (their lengths; the store's files are
/// created at full length, sparse until written).
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => size_of(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Restarts `component`, saying how long it took.
fn restart(engine: &mut RocketMqEngine, component: Component) {
    let started = Instant::now();
    engine
        .restart(component)
        .unwrap_or_else(|e| panic!("restarting {component:?}: {e}"));
    eprintln!(
        "{component:?} restarted in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn engine_starts_survives_kills_and_cleans_up() {
    let started = Instant::now();
    let mut engine = RocketMqEngine::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "engine ready in {:.2}s in {} (namesrv {}, broker {}, proxy {}); files of {} KiB",
        started.elapsed().as_secs_f64(),
        engine.dir().display(),
        engine.namesrv_addr(),
        engine.broker_addr(),
        engine.proxy_endpoint(),
        size_of(engine.dir()) >> 10
    );
    assert_all_accept(&engine, "after start");

    engine.kill(Component::Broker).expect("kill broker");
    assert!(
        !accepts(engine.broker_addr()),
        "a killed broker still accepts"
    );
    assert!(
        accepts(engine.proxy_endpoint()),
        "the proxy died with the broker"
    );
    restart(&mut engine, Component::Broker);
    assert_all_accept(&engine, "after the broker's restart");

    // Ready once the broker has registered with it again (the broker's 10 s period).
    restart(&mut engine, Component::Namesrv);
    restart(&mut engine, Component::Proxy);
    assert_all_accept(&engine, "after the name server's and the proxy's restarts");
    assert!(
        !engine.log_tail(Component::Broker, 200).is_empty(),
        "the broker's log is readable"
    );

    let dir = engine.dir().to_owned();
    let addrs = [
        engine.namesrv_addr(),
        engine.broker_addr(),
        engine.proxy_endpoint(),
    ];
    drop(engine);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for addr in addrs {
        assert!(!accepts(addr), "{addr} still accepts after drop");
    }
}
