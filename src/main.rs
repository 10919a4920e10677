//! The `slotgate` binary: parse flags, set up logging, run the proxy.

use clap::Parser;
use slotgate::config::{Cli, Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: after a burst of big replies, glibc's
/// malloc kept the freed memory (RSS stayed at 405 MiB ten seconds after ten slow
/// readers of 1 MiB values left); mimalloc gives it back (tests/resource_limits.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slotgate: {e}");
            std::process::exit(2);
        }
    };

    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if cli.log_level.is_none() => EnvFilter::try_new(directive),
        _ => EnvFilter::try_new(&config.log_level),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("slotgate: config key `log_level`: {e}");
            std::process::exit(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    if let Err(e) = slotgate::server::run(config) {
        tracing::error!(error = %e, "slotgate stopped");
        eprintln!("slotgate: {e}");
        std::process::exit(1);
    }
    Ok(())
}
