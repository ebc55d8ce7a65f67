use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc's allocator raises its mmap threshold with every large free (up
/// to 32 MiB), after which big buffers come from the heap and stay mapped
/// when freed: a server that had diagnosed and exported a 5M-point run sat
/// at 250 MiB. A fixed 4 MiB threshold maps only the really big buffers
/// (a diagnosis's series, a full read), which go back to the system when
/// freed: 25 MiB idle, ingest and reads as fast (bench/memory.py, bench/).
/// An operator's own `MALLOC_MMAP_THRESHOLD_` wins. Must run before any
/// thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter, and no other thread
    // exists yet to allocate concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> std::process::ExitCode {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(run())
}

async fn run() -> std::process::ExitCode {
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
