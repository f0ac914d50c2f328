//! `fedimpute man-pages --out-dir DIR`: the manual, one roff page per command and subcommand,
//! generated from the same clap definitions `--help` shows (the Debian package ships them).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// Folder to write the pages into (`fedimpute.1`, `fedimpute-run.1`, ...); created if absent.
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(args: ManPagesArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    // generate_to builds the command itself, with clap's `help` pseudo-subcommand left out.
    clap_mangen::generate_to(super::Cli::command(), &args.out_dir)
        .with_context(|| format!("writing man pages into {}", args.out_dir.display()))?;
    let count = std::fs::read_dir(&args.out_dir)?.filter_map(Result::ok).count();
    eprintln!("{count} man pages in {}", args.out_dir.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_page_that_names_its_options() {
        let dir = tempfile::tempdir().unwrap();
        run(ManPagesArgs { out_dir: dir.path().to_path_buf() }).unwrap();
        for page in ["fedimpute.1", "fedimpute-run.1", "fedimpute-backup.1", "fedimpute-federation-sign.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not roff");
        }
        let backup = std::fs::read_to_string(dir.path().join("fedimpute-backup.1")).unwrap();
        assert!(backup.contains("without\\-panels"), "{backup}");
        assert!(!dir.path().join("fedimpute-help.1").exists());
    }
}
