//! The loader refuses a Functions library of another version.

use ringside_testkit::Backend;

on_both_backends!(the_loader_refuses_other_library_versions);

async fn the_loader_refuses_other_library_versions(backend: Backend) {
    // its own Redis: replacing the library must not disturb tests sharing the cluster
    let own = ringside_testkit::TestRedis::start(backend).unwrap();
    let mut conn = ringside_lua::Redis::connect(&own.urls(), own.is_cluster())
        .await
        .unwrap();
    assert!(matches!(
        ringside_lua::check_version(&mut conn).await,
        Err(ringside_lua::LoadError::Missing { .. })
    ));
    let fake = |v: u32| {
        format!("#!lua name=ringside\nredis.register_function{{function_name='version', callback=function() return 'ringside {v}' end, flags={{'no-writes'}}}}\n")
    };
    // an older version is replaced
    let load = |src: String| {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(src)
            .clone()
    };
    conn.on_every_primary(&load(fake(0))).await.unwrap();
    let out = ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    assert!(
        matches!(out, ringside_lua::LoadOutcome::Loaded { ref replaced } if replaced.iter().all(|(_, v)| *v == 0)),
        "{out:?}"
    );
    ringside_lua::check_version(&mut conn).await.unwrap();
    assert_eq!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::AlreadyCurrent
    );
    // the same version with other code (a forgotten version bump) is replaced too
    conn.on_every_primary(&load(fake(ringside_lua::VERSION)))
        .await
        .unwrap();
    assert!(matches!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::Loaded { .. }
    ));
    assert_eq!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::AlreadyCurrent
    );
    // a newer one is never downgraded, and this build refuses to run against it
    conn.on_every_primary(&load(fake(ringside_lua::VERSION + 1)))
        .await
        .unwrap();
    let err = ringside_lua::ensure_loaded(&mut conn).await.unwrap_err();
    assert!(
        matches!(err, ringside_lua::LoadError::VersionMismatch { found, .. } if found == ringside_lua::VERSION + 1),
        "{err}"
    );
    assert!(matches!(
        ringside_lua::check_version(&mut conn).await,
        Err(ringside_lua::LoadError::VersionMismatch { .. })
    ));
}
