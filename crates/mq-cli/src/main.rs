//! `mq`: serve a local broker, publish, consume, resolve transactions and benchmark. See
//! `mq --help`.

/// mimalloc, as the `mq-broker` binary: `mq serve` runs a broker (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mq_cli::main()
}
