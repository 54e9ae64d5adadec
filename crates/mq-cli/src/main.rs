//! `mq`: serve a local broker, publish, consume, resolve transactions and benchmark. See
//! `mq --help`.

fn main() -> std::process::ExitCode {
    mq_cli::main()
}
