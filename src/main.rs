//! The `slotgate` binary: parse flags, set up logging, run the proxy.

use clap::Parser;
use slotgate::config::{log_filter, Cli, Config, LogFormat};
use slotgate::reload::Reloader;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

    // The level from the flag or the file (already checked), else RUST_LOG (set and not
    // empty), else info. A bad filter names where it came from and exits 2, like any
    // bad value.
    let (source, filter) = match (&config.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => ("config key `log_level`", level.clone()),
        (None, Ok(directives)) if !directives.trim().is_empty() => ("RUST_LOG", directives),
        (None, Err(std::env::VarError::NotUnicode(_))) => {
            eprintln!("slotgate: RUST_LOG: not UTF-8");
            std::process::exit(2);
        }
        (None, _) => ("config key `log_level`", "info".to_string()),
    };
    let filter = match log_filter(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("slotgate: {source}: {e}");
            std::process::exit(2);
        }
    };
    // The filter can be swapped by a reload (`log_level`); interest is cached per
    // call site and rebuilt on a swap, so a disabled line costs what it did.
    let (filter, filter_handle) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Text => registry.with(logs).init(),
        LogFormat::Json => registry.with(logs.json()).init(),
    }
    let set_log_filter = move |filter| filter_handle.reload(filter).map_err(|e| e.to_string());
    let reloader = Reloader::new(cli, Some(Box::new(set_log_filter)));

    if let Err(e) = slotgate::server::run(config, reloader) {
        tracing::error!(error = %e, "slotgate stopped");
        eprintln!("slotgate: {e}");
        std::process::exit(1);
    }
    Ok(())
}
