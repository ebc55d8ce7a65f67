use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = trainlens::cli::Cli::parse();
    // The server logs what it does; one-shot commands only what goes wrong.
    let serving = matches!(cli.command, None | Some(trainlens::cli::Command::Serve(_)));
    let default_filter = if serving {
        "trainlens=info,tower_http=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match trainlens::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `trainlens findings | head`: the reader left; not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
