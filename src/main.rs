use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc's allocator raises its mmap threshold with every large free, so the
/// memory of a big answer or diagnosis stayed mapped long after it was freed
/// (a server that had diagnosed and exported a 5M-point run sat at 250 MiB);
/// with a fixed threshold, large buffers go back to the system when freed
/// (bench/memory.py: 28 MiB). Must run before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets allocator parameters, and no other thread
    // exists yet to allocate concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
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
