//! Loading the library into Redis, and refusing to run against another version.
//!
//! The library answers `FCALL version 0` with `ringside <N>`. [`ensure_loaded`] asks every primary (on a
//! cluster `FUNCTION LOAD` must reach each one: functions are not replicated across shards) and runs
//! `FUNCTION LOAD REPLACE` on all primaries when any of them has no library or an older one; it never
//! replaces a newer one. [`check_version`] is what edges and engines call at start (and may call
//! periodically): it fails with a typed error unless every primary runs exactly [`VERSION`].

use crate::{LoadError, Redis, LIBRARY, VERSION};
use redis::{RedisResult, Value};

/// What [`ensure_loaded`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Every primary already ran [`VERSION`].
    AlreadyCurrent,
    /// The library was loaded (replacing older versions where there were any).
    Loaded { replaced: Vec<(String, u32)> },
}

/// The version each primary runs: `None` where the library is missing.
pub async fn loaded_versions(conn: &mut Redis) -> Result<Vec<(String, Option<u32>)>, LoadError> {
    let answers = conn
        .on_every_primary(redis::cmd("FCALL").arg("version").arg(0))
        .await?;
    answers
        .into_iter()
        .map(|(node, answer)| parse_version(node, answer))
        .collect()
}

fn parse_version(
    node: String,
    answer: RedisResult<Value>,
) -> Result<(String, Option<u32>), LoadError> {
    let text = match answer {
        Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Value::SimpleString(s)) => s,
        Ok(other) => {
            return Err(LoadError::BadVersionReply {
                node,
                detail: format!("{other:?}"),
            })
        }
        Err(e) if e.to_string().contains("Function not found") => return Ok((node, None)),
        Err(e) => return Err(LoadError::Redis(e)),
    };
    match text
        .strip_prefix("ringside ")
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        Some(v) => Ok((node, Some(v))),
        None => Err(LoadError::BadVersionReply { node, detail: text }),
    }
}

/// `FUNCTION LOAD REPLACE` of [`LIBRARY`] on every primary, unconditionally.
pub async fn load(conn: &mut Redis) -> Result<(), LoadError> {
    let answers = conn
        .on_every_primary(
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(LIBRARY),
        )
        .await?;
    for (_, answer) in answers {
        answer?;
    }
    Ok(())
}

/// Loads the library where it is missing or older than [`VERSION`]; refuses (with
/// [`LoadError::VersionMismatch`]) when any primary runs a newer version, so an old binary never downgrades
/// a deployment. Safe to call from many processes at once.
pub async fn ensure_loaded(conn: &mut Redis) -> Result<LoadOutcome, LoadError> {
    let versions = loaded_versions(conn).await?;
    if let Some((node, Some(found))) = versions
        .iter()
        .find(|(_, v)| matches!(v, Some(v) if *v > VERSION))
    {
        return Err(LoadError::VersionMismatch {
            node: node.clone(),
            found: *found,
            expected: VERSION,
        });
    }
    if versions.iter().all(|(_, v)| *v == Some(VERSION)) && same_code_everywhere(conn).await? {
        return Ok(LoadOutcome::AlreadyCurrent);
    }
    load(conn).await?;
    check_version(conn).await?;
    // nodes that had a library: an older version, or this version with other code
    let replaced = versions
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    Ok(LoadOutcome::Loaded { replaced })
}

/// Whether every primary holds exactly [`LIBRARY`] (`FUNCTION LIST ... WITHCODE`). A build whose Lua
/// changed without a version bump (a development slip) is then still replaced by [`ensure_loaded`].
async fn same_code_everywhere(conn: &mut Redis) -> Result<bool, LoadError> {
    let cmd = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg(crate::LIBRARY_NAME)
        .arg("WITHCODE")
        .clone();
    for (_, answer) in conn.on_every_primary(&cmd).await? {
        let libs = answer?;
        if !value_contains_code(&libs) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Finds the `library_code` entry of a FUNCTION LIST reply (RESP2 arrays or RESP3 maps) and compares it.
fn value_contains_code(v: &Value) -> bool {
    match v {
        Value::BulkString(b) => b.as_slice() == LIBRARY.as_bytes(),
        Value::Array(items) | Value::Set(items) => items.iter().any(value_contains_code),
        Value::Map(pairs) => pairs
            .iter()
            .any(|(k, v)| value_contains_code(k) || value_contains_code(v)),
        _ => false,
    }
}

/// Ok when every primary runs exactly [`VERSION`]; else [`LoadError::Missing`] or
/// [`LoadError::VersionMismatch`]. Edges and engines call it before serving.
pub async fn check_version(conn: &mut Redis) -> Result<(), LoadError> {
    for (node, version) in loaded_versions(conn).await? {
        match version {
            None => return Err(LoadError::Missing { node }),
            Some(v) if v != VERSION => {
                return Err(LoadError::VersionMismatch {
                    node,
                    found: v,
                    expected: VERSION,
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}
