use std::process::ExitCode;

use clap::Parser;
use fedimpute_node::cli::{self, Cli};

fn main() -> ExitCode {
    // libp2p's TLS pulls in aws-lc-rs; installing it as the process-wide rustls provider before
    // anything else touches rustls avoids the panic rustls raises when two providers are linked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
