//! Running the external tools (tabix, bcftools, Beagle's bref3, Minimac4) with errors that say
//! which tool failed on what, and what it printed.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

/// A tool that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}: {source} (install it with scripts/install-deps.sh or set its path under [engines])")]
    Missing { tool: String, source: std::io::Error },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed { tool: String, status: String, stderr: String },
}

/// Runs `program args...`; stdout goes to `stdout_to` when given. Returns stderr's text.
pub async fn run(program: &Path, args: &[&std::ffi::OsStr], stdout_to: Option<&Path>) -> Result<String, ToolError> {
    let tool = program.display().to_string();
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    match stdout_to {
        Some(path) => {
            let file =
                std::fs::File::create(path).map_err(|source| ToolError::Missing { tool: tool.clone(), source })?;
            command.stdout(file);
        }
        None => {
            command.stdout(Stdio::null());
        }
    }
    // Not `output()`: tokio's version replaces stdout with a pipe even when it was redirected.
    let child = command.spawn().map_err(|source| ToolError::Missing { tool: tool.clone(), source })?;
    let output = child.wait_with_output().await.map_err(|source| ToolError::Missing { tool: tool.clone(), source })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let tail: String =
            stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
        return Err(ToolError::Failed { tool, status: output.status.to_string(), stderr: tail });
    }
    Ok(stderr)
}

/// Shorthand for building an argument list of mixed strings and paths.
#[macro_export]
macro_rules! tool_args {
    ($($a:expr),* $(,)?) => { [$(std::ffi::OsStr::new($a)),*] };
}
