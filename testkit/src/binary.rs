//! Finding `redis-server` and `redis-cli`: the environment variable first, then `PATH`.
//!
//! The lookup takes the environment as parameters ([`find_binary_in`]) so tests can check the
//! "not installed" message without mutating process-global environment variables.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// Environment variable naming the `redis-server` binary to use.
pub const REDIS_SERVER_ENV: &str = "REDIS_SERVER";
/// Environment variable naming the `redis-cli` binary to use.
pub const REDIS_CLI_ENV: &str = "REDIS_CLI";

/// Finds `name` using the real environment: `$env_var` if set, else `$PATH`.
pub fn find_binary(name: &str, env_var: &str) -> Result<PathBuf, HarnessError> {
    find_binary_in(
        name,
        env_var,
        std::env::var_os(env_var).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// Finds `name` given the value of its override variable `env_var` and of `PATH`.
///
/// An override that contains a `/` must be an executable file (no silent fallback to `PATH`: the
/// caller asked for that one); one without a `/` is a program name looked up on `PATH`. An empty
/// override counts as unset. The error says how to install Redis.
pub fn find_binary_in(
    name: &str,
    env_var: &str,
    env_value: Option<&OsStr>,
    path: Option<&OsStr>,
) -> Result<PathBuf, HarnessError> {
    let not_found = |detail: String| HarnessError::BinaryNotFound {
        binary: name.to_owned(),
        env_var: env_var.to_owned(),
        detail,
    };
    let wanted = match env_value.filter(|v| !v.is_empty()) {
        Some(value) => {
            let candidate = Path::new(value);
            if value.to_string_lossy().contains('/') {
                return if is_executable(candidate) {
                    Ok(candidate.to_path_buf())
                } else {
                    Err(not_found(format!(
                        "{env_var}={} is not an executable file",
                        candidate.display()
                    )))
                };
            }
            value
        }
        None => OsStr::new(name),
    };
    let path = path.unwrap_or_default();
    std::env::split_paths(path)
        .map(|dir| dir.join(wanted))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            not_found(format!(
                "no executable {} on PATH={}",
                Path::new(wanted).display(),
                path.to_string_lossy()
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
