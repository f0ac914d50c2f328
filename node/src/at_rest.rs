//! Files at rest are the node user's alone: genotypes (inputs, work files, results), panels,
//! keys and the database. Every `fedimpute` process sets its umask to 077 before it writes
//! anything, so files it (and the engines it starts) creates are 0600 and folders 0700; files
//! copied in from elsewhere are given those modes explicitly (a copy keeps its source's mode);
//! and a data directory that others could write to is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Files and folders this process creates are readable by its user only.
pub fn restrict_umask() {
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
}

/// A data directory others cannot write to (refused otherwise, with what to do), and closed to
/// them: a folder made by an earlier version with mode 0755 is set to 0700.
pub fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| anyhow::anyhow!("data directory {}: {e}", dir.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "the data directory {} can be written by other users (mode {mode:o}); it holds genotypes and keys. \
             Run `chmod 700 {}` and start again.",
            dir.display(),
            dir.display()
        );
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| anyhow::anyhow!("closing the data directory {} to other users: {e}", dir.display()))?;
    }
    Ok(())
}

/// Bytes free (for this user) on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) fills `stat` for a NUL-terminated path; both outlive the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Copies `from` to `to` as a private file (0600), whatever mode `from` has.
pub fn private_copy(from: &Path, to: &Path) -> std::io::Result<u64> {
    let n = std::fs::copy(from, to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_others_can_write_to_is_refused_and_a_readable_one_closed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_data_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("can be written by other users") && err.contains("chmod 700"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_data_dir(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn copies_are_private_whatever_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("panel.vcf.gz"), dir.path().join("copy"));
        std::fs::write(&from, b"panel").unwrap();
        std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_copy(&from, &to).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
