//! The `coursechat` binary: parse the configuration, set up logging, run the node.

use clap::Parser;
use coursechat::config::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let config = Cli::parse().into_serve();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coursechat: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(coursechat::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coursechat: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
