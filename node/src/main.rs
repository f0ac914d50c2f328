use std::process::ExitCode;

use clap::Parser;
use fedimpute_node::cli::{self, Cli};

fn main() -> ExitCode {
    limit_allocator_retention();
    forget_tls_key_log();
    // Before anything is written: files and folders this process (or an engine it starts)
    // creates are the node user's alone.
    fedimpute_node::at_rest::restrict_umask();
    // libp2p's TLS pulls in aws-lc-rs; installing it as the process-wide rustls provider before
    // anything else touches rustls avoids the panic rustls raises when two providers are linked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Cli::parse();
    let json = args.json();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if json {
                println!("{}", cli::error_json(&err));
            }
            cli::exit_code(&err)
        }
    }
}

/// Keeps the daemon's memory flat under large transfers and QC. By default glibc keeps up to
/// eight heap arenas per core, each holding on to freed chunk buffers, and raises its mmap
/// threshold as large blocks are freed: RSS grows with every busy thread. Two arenas are plenty
/// for a tokio runtime on few cores, and a fixed threshold stops the drift (buffers of 4 MiB
/// and more get their own mappings; the 1 MiB chunk buffers are reused from the heap).
fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// libp2p's TLS writes every session's secrets to the file `SSLKEYLOGFILE` names, if it is
/// set: anyone who can read that file and a capture could read the genotypes sent between
/// nodes. A node never wants that, so the variable is dropped (with a warning) before anything
/// reads it, and engines started later do not inherit it either.
fn forget_tls_key_log() {
    if std::env::var_os("SSLKEYLOGFILE").is_some() {
        // SAFETY: called first thing in main, before any thread is started.
        unsafe { std::env::remove_var("SSLKEYLOGFILE") };
        eprintln!("warning: SSLKEYLOGFILE is set; ignored (fedimpute never logs TLS secrets)");
    }
}
