//! A room past 25,000 players: the repeating room-wide broadcasts (coalesced `room:player:joined`,
//! `game:answer:progress`) slow down so that one room costs the edges a bounded number of frames per
//! second (docs/protocol.md §5). Real joins through the library, on a standalone server of the test's
//! own (the cluster runs the same function; 25K joins twice would only slow the suite down).

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::events::ServerEvent;
use ringside_testkit::Backend;

const PLAYERS: usize = 25_001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_intervals_grow_with_the_room() {
    let env = env(Backend::Standalone).await;
    let q = quiz(&unique("big"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());

    // A small room ticks progress every second.
    let small = room(&env, &quiz(&unique("small"), 1, 60_000), &settings()).await;
    join_n(&env, &small.game_code, 3).await;
    env.game
        .start(&small.game_code, &small.host_token)
        .await
        .unwrap();
    assert!(
        fire_latest(&env, &small.game_code, TimerKind::CountdownEnd)
            .await
            .fired
    );
    let tick = latest_timer(&env, &small.game_code, TimerKind::Progress).await;
    assert_eq!(tick.every, Some(1000));

    // 25,001 real joins, 16 at a time over the multiplexed connection.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (game, code) = (env.game.clone(), code.clone());
            tokio::spawn(async move {
                for i in (t..PLAYERS).step_by(16) {
                    game.join(&code, &format!("p{i}"), 0, None)
                        .await
                        .expect("join");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(hget(&env, &code, "", "np").await.as_deref(), Some("25001"));

    // Announce what is pending, then one more join: with > 20K members the next announcement is
    // scheduled 2 s after the last one, not 1 s.
    let flush = latest_timer(&env, &code, TimerKind::LobbyFlush).await;
    fire(&env, &flush).await;
    let last: u64 = hget(&env, &code, "", "lflush")
        .await
        .unwrap()
        .parse()
        .unwrap();
    env.game.join(&code, "one more", 0, None).await.unwrap();
    let next = latest_timer(&env, &code, TimerKind::LobbyFlush).await;
    assert!(next.gen > flush.gen, "a new flush was scheduled");
    assert_eq!(
        next.due,
        last + 2000,
        "⌈25,002 / 20,000⌉ s after the last announcement"
    );

    // The start announces "one more" at once, before the countdown (the flush scheduled 2 s out would
    // otherwise send a frame to every member next to the first question), and that flush is then stale.
    env.game.start(&code, &host).await.unwrap();
    let events: Vec<ServerEvent> = log(&env, &code)
        .await
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    let n = events.len();
    match (&events[n - 2], &events[n - 1]) {
        (ServerEvent::PlayerJoined(j), ServerEvent::Countdown(_)) => {
            assert_eq!(j.players.last().unwrap().name, "one more");
            assert_eq!(j.total_count, 25_002);
        }
        other => panic!("expected room:player:joined then game:countdown, got {other:?}"),
    }
    assert!(
        !fire(&env, &next).await.fired,
        "the scheduled flush is stale"
    );

    // The question's progress ticks every ⌈25,002 / 25,000⌉ = 2 s.
    assert!(
        fire_latest(&env, &code, TimerKind::CountdownEnd)
            .await
            .fired
    );
    let tick = latest_timer(&env, &code, TimerKind::Progress).await;
    assert_eq!(tick.every, Some(2000));
    let qstart: u64 = hget(&env, &code, "", "qstart")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(tick.due, qstart + 2000);
}
