//! `coursechat-load`: a benchmark for any server that implements the coursechat wire contract.
//!
//! It creates its own fixtures through the admin API and REST, opens authenticated Socket.IO
//! sockets in student/tutor pairs, sends at a target rate and reports what the server did with
//! it. `main` only parses the command line and prints; the run itself is in `run.rs`.

mod cli;
mod connection;
mod fixtures;
mod plan;
mod probe;
mod protocol;
mod rest;
mod run;
mod socket;
mod stats;
mod summary;
mod token;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use summary::Summary;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge { files, json }) => merge(&files).map(|s| (s, json)),
        None => {
            let json = cli.run.json;
            run::run(cli.run).await.map(|s| (s, json))
        }
    };
    match result {
        Ok((summary, json)) => {
            print(&summary, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coursechat-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The report on stdout; with `--json`, the JSON on stdout and the report on stderr.
fn print(summary: &Summary, json: bool) {
    let report = summary::render(summary);
    if json {
        eprint!("{report}");
        match serde_json::to_string_pretty(summary) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("coursechat-load: cannot encode the JSON summary: {e}"),
        }
    } else {
        print!("{report}");
    }
}

fn merge(files: &[std::path::PathBuf]) -> Result<Summary, run::Error> {
    let mut parts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let part: Summary = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a coursechat-load --json summary: {e}", file.display()))?;
        parts.push(part);
    }
    Ok(summary::merge(&parts).ok_or("nothing to merge")?)
}
