//! [`shared_cluster`]: one cluster per test binary, started on first use, for suites where starting a
//! cluster per test would dominate the run time.
//!
//! Why its lifetime is sound although it sits in a static that is never dropped: its processes were
//! forked by the process-lifetime spawner thread with SIGKILL as parent-death signal, so they die
//! exactly when the test process exits (normally, by panic=abort, or killed); their directories are
//! removed by the next run of any test that uses the testkit (directory names carry the owner's pid).
//! Under cargo nextest each test is its own process, so there it is simply one cluster per test.

use std::sync::OnceLock;

use crate::{HarnessError, RedisCluster};

/// The binary's shared 3-primary cluster, started by the first caller; later callers get the same
/// cluster (or the same startup error).
///
/// Tests share it concurrently: use keys unique to the test (e.g. a hash tag with the test's name),
/// do not FLUSHALL, and do not kill nodes (it is only lent out as `&`). Use
/// [`RedisCluster::start`] for a cluster of your own.
pub fn shared_cluster() -> Result<&'static RedisCluster, &'static HarnessError> {
    static SHARED: OnceLock<Result<RedisCluster, HarnessError>> = OnceLock::new();
    SHARED.get_or_init(RedisCluster::start).as_ref()
}
