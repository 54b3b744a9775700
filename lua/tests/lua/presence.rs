//! Presence: a player whose socket dropped (`player_away`, reported by the edge) keeps their place, score
//! and name, but "everyone answered" means every *connected* player answered; a reconnect brings them
//! back (counted again from then on). The close of an older socket never marks a player who is already
//! back on a newer one (the connection epoch). Presence changes are announced coalesced
//! (`room:player:presence`).

use crate::common::*;
use ringside_lua::game::BatchedAnswer;
use ringside_lua::TimerKind;
use ringside_protocol::events::{PlayerPresence, QuestionReveal, ServerEvent};
use ringside_testkit::Backend;

on_both_backends!(
    a_dropped_player_does_not_hold_up_the_reveal_and_counts_again_once_back,
    an_away_report_that_completes_everyone_answered_reveals_at_once,
    a_close_older_than_the_reconnect_changes_nothing,
    kicks_and_leaves_of_away_players_keep_the_count,
    nobody_connected_runs_the_question_to_its_end,
    an_answer_that_arrives_after_its_players_away_report_counts_once,
    a_late_answer_of_an_away_player_reveals_nothing_while_nobody_is_connected,
);

/// The room's state field.
async fn state(env: &Env, code: &str) -> String {
    hget(env, code, "", "state").await.expect("state")
}

async fn reveals(env: &Env, code: &str) -> Vec<QuestionReveal> {
    log(env, code)
        .await
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            ServerEvent::QuestionReveal(r) => Some(r),
            _ => None,
        })
        .collect()
}

async fn presences(env: &Env, code: &str) -> Vec<PlayerPresence> {
    log(env, code)
        .await
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            ServerEvent::PlayerPresence(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Announces pending presence changes now (the coalesced flush, as the engine would fire it).
async fn flush(env: &Env, code: &str) {
    let out = fire_latest(env, code, TimerKind::LobbyFlush).await;
    let _ = out; // may be stale when a flush already announced them at once
}

async fn a_dropped_player_does_not_hold_up_the_reveal_and_counts_again_once_back(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("away"), 3, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &host).await;

    // p2's socket drops (the join's socket: epoch 0) before answering
    assert!(env
        .game
        .player_away(&code, &p[2].player_id, 0)
        .await
        .unwrap());
    assert!(
        !env.game
            .player_away(&code, &p[2].player_id, 0)
            .await
            .unwrap(),
        "already away"
    );
    env.game
        .answer_submit(&code, &p[0].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "ACTIVE");
    env.game
        .answer_submit(&code, &p[1].player_id, 0, wrong(0) as u32)
        .await
        .unwrap();
    // every connected player answered: revealed at once, not at the question's end
    assert_eq!(state(&env, &code).await, "REVEAL");
    let r = reveals(&env, &code).await;
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].answered_count, r[0].total_count), (2, 3));
    // p2 keeps their place: still a player of the room, in the leaderboard
    assert!(hget(&env, &code, ":players", &p[2].player_id)
        .await
        .is_some());

    // the host is told: one coalesced room:player:presence
    flush(&env, &code).await;
    let pres = presences(&env, &code).await;
    let last = pres.last().expect("a presence event");
    assert_eq!(last.away, vec![p[2].player_id.clone()]);
    assert!(last.back.is_empty());
    assert_eq!((last.away_count, last.total_count), (1, 3));

    // question 1 opens while p2 is still away: it does not wait for p2 either ...
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("1"));
    // ... until p2 comes back mid-question without having answered: counted again
    let back = env
        .game
        .reconnect(&code, &p[2].player_id, &p[2].session_token, None)
        .await
        .unwrap();
    assert_eq!(back.epoch, 1);
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("0"));
    for pl in &p[..2] {
        env.game
            .answer_submit(&code, &pl.player_id, 1, correct(1) as u32)
            .await
            .unwrap();
    }
    assert_eq!(
        state(&env, &code).await,
        "ACTIVE",
        "p2 is back: the question waits for p2"
    );
    env.game
        .answer_submit(&code, &p[2].player_id, 1, correct(1) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "REVEAL");
    flush(&env, &code).await;
    let last = presences(&env, &code).await.pop().unwrap();
    assert_eq!(last.back, vec![p[2].player_id.clone()]);
    assert_eq!(last.away_count, 0);

    // a player who answered and then dropped counts as answered
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    env.game
        .answer_submit(&code, &p[0].player_id, 2, correct(2) as u32)
        .await
        .unwrap();
    assert!(env
        .game
        .player_away(&code, &p[0].player_id, 0)
        .await
        .unwrap());
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("0"));
    env.game
        .answer_submit(&code, &p[1].player_id, 2, correct(2) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "ACTIVE", "p2 has not answered");
    env.game
        .answer_submit(&code, &p[2].player_id, 2, correct(2) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "REVEAL");

    // after the end nothing changes
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    assert_eq!(state(&env, &code).await, "ENDED");
    assert!(!env
        .game
        .player_away(&code, &p[1].player_id, 0)
        .await
        .unwrap());
}

async fn an_away_report_that_completes_everyone_answered_reveals_at_once(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("away"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &host).await;
    for pl in &p[..2] {
        env.game
            .answer_submit(&code, &pl.player_id, 0, correct(0) as u32)
            .await
            .unwrap();
    }
    assert_eq!(state(&env, &code).await, "ACTIVE");
    // the one who has not answered drops: every connected player has answered
    assert!(env
        .game
        .player_away(&code, &p[2].player_id, 0)
        .await
        .unwrap());
    assert_eq!(state(&env, &code).await, "REVEAL");
    assert_eq!(reveals(&env, &code).await.len(), 1);
}

async fn a_close_older_than_the_reconnect_changes_nothing(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("away"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = join_n(&env, &code, 2).await;
    open_first_question(&env, &code, &host).await;
    // p0 reconnects on a new socket (perhaps to another edge) before the old socket's close is processed
    let back = env
        .game
        .reconnect(&code, &p[0].player_id, &p[0].session_token, None)
        .await
        .unwrap();
    assert_eq!(back.epoch, 1);
    assert!(
        !env.game
            .player_away(&code, &p[0].player_id, 0)
            .await
            .unwrap(),
        "the old socket's close must not mark a player who is back"
    );
    assert_eq!(hget(&env, &code, "", "naway").await, None);
    // p1 answers: p0 is connected and has not answered, so no reveal
    env.game
        .answer_submit(&code, &p[1].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "ACTIVE");
    // the newer socket's close does mark p0 away: then everyone connected has answered
    assert!(env
        .game
        .player_away(&code, &p[0].player_id, 1)
        .await
        .unwrap());
    assert_eq!(state(&env, &code).await, "REVEAL");
    // an unknown player or epoch from the future changes nothing
    assert!(!env.game.player_away(&code, "nobody", 0).await.unwrap());
    assert!(!env
        .game
        .player_away(&code, &p[1].player_id, 7)
        .await
        .unwrap());
    // the host's reconnect has no epoch and writes nothing
    let h = env
        .game
        .reconnect(&code, "host", &host, None)
        .await
        .unwrap();
    assert_eq!(h.epoch, 0);
}

async fn kicks_and_leaves_of_away_players_keep_the_count(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("away"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = join_n(&env, &code, 4).await;
    open_first_question(&env, &code, &host).await;
    // p3 away without an answer, then kicked; p2 away without an answer, then leaves
    assert!(env
        .game
        .player_away(&code, &p[3].player_id, 0)
        .await
        .unwrap());
    assert!(env
        .game
        .player_away(&code, &p[2].player_id, 0)
        .await
        .unwrap());
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("2"));
    env.game.kick(&code, &host, &p[3].player_id).await.unwrap();
    env.game.leave(&code, &p[2].player_id).await.unwrap();
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("0"));
    assert_eq!(hget(&env, &code, "", "naway").await.as_deref(), Some("0"));
    assert_eq!(hget(&env, &code, "", "np").await.as_deref(), Some("2"));
    env.game
        .answer_submit(&code, &p[0].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "ACTIVE");
    env.game
        .answer_submit(&code, &p[1].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "REVEAL");
    // the next question waits for exactly the two players left
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("0"));
    env.game
        .answer_submit(&code, &p[0].player_id, 1, correct(1) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "ACTIVE");
}

async fn nobody_connected_runs_the_question_to_its_end(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("away"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = join_n(&env, &code, 2).await;
    open_first_question(&env, &code, &host).await;
    for pl in &p {
        assert!(env.game.player_away(&code, &pl.player_id, 0).await.unwrap());
    }
    assert_eq!(
        state(&env, &code).await,
        "ACTIVE",
        "everyone away: the question runs its time"
    );
    // one comes back and answers: everyone connected has answered
    env.game
        .reconnect(&code, &p[0].player_id, &p[0].session_token, None)
        .await
        .unwrap();
    env.game
        .answer_submit(&code, &p[0].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert_eq!(state(&env, &code).await, "REVEAL");
}

/// The edge sends an answer and, when the socket closes right after, the away report — on different paths,
/// so Redis may see the report first. The answer must then take the player out of "away without an answer"
/// (`aw`); else the player would count twice and the question reveal before everyone connected answered.
/// Through `answer_submit` and through `answer_batch`.
async fn an_answer_that_arrives_after_its_players_away_report_counts_once(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("late"), 3, 60_000);
    for batched in [false, true] {
        let created = room(&env, &q, &settings()).await;
        let (code, host) = (created.game_code.clone(), created.host_token.clone());
        let p = join_n(&env, &code, 3).await;
        open_first_question(&env, &code, &host).await;

        assert!(env
            .game
            .player_away(&code, &p[0].player_id, 0)
            .await
            .unwrap());
        assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("1"));
        // the presence keys made now expire with the room
        for suffix in [":conn", ":presq"] {
            let mut conn = env.conn.clone();
            let ttl: i64 = redis::cmd("PTTL")
                .arg(format!("{}{suffix}", ringside_protocol::keys::room(&code)))
                .query_async(&mut conn)
                .await
                .unwrap();
            // -2: no such key (the change was announced at once and the queue emptied)
            assert!(ttl > 0 || ttl == -2, "{suffix}: PTTL {ttl}");
        }
        // p0's answer, sent before its socket closed, arrives after the report
        answer(&env, &code, &p[0].player_id, correct(0), batched).await;
        assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("0"));
        // 1 answer of 3 players, p0 away but answered: the two connected players have not answered
        assert_eq!(state(&env, &code).await, "ACTIVE", "batched {batched}");
        env.game
            .answer_submit(&code, &p[1].player_id, 0, wrong(0) as u32)
            .await
            .unwrap();
        assert_eq!(state(&env, &code).await, "ACTIVE", "batched {batched}");
        // the last connected player answers: revealed, with 3 answers
        answer(&env, &code, &p[2].player_id, wrong(0), batched).await;
        assert_eq!(state(&env, &code).await, "REVEAL", "batched {batched}");
        let r = reveals(&env, &code).await;
        assert_eq!(r.len(), 1, "batched {batched}");
        assert_eq!(r[0].answered_count, 3, "batched {batched}: {r:?}");
    }
}

/// Everyone is away and one of them had sent an answer that reaches Redis after the away reports: it
/// counts (answered count 1 of 2, the answerer no longer "away without an answer"), but nobody is
/// connected, so the question runs its time — the same guard as the away report's own early reveal
/// (`nobody_connected_runs_the_question_to_its_end`). Through `answer_submit` and `answer_batch`.
async fn a_late_answer_of_an_away_player_reveals_nothing_while_nobody_is_connected(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("allaway"), 1, 60_000);
    for batched in [false, true] {
        let created = room(&env, &q, &settings()).await;
        let (code, host) = (created.game_code.clone(), created.host_token.clone());
        let p = join_n(&env, &code, 2).await;
        open_first_question(&env, &code, &host).await;
        for pl in &p {
            assert!(env.game.player_away(&code, &pl.player_id, 0).await.unwrap());
        }
        answer(&env, &code, &p[0].player_id, correct(0), batched).await;
        assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("1"));
        assert_eq!(hget(&env, &code, "", "aw").await.as_deref(), Some("1"));
        assert_eq!(
            state(&env, &code).await,
            "ACTIVE",
            "batched {batched}: nobody connected, the question runs its time"
        );
        // the other one comes back and answers: revealed, with both answers
        env.game
            .reconnect(&code, &p[1].player_id, &p[1].session_token, None)
            .await
            .unwrap();
        answer(&env, &code, &p[1].player_id, wrong(0), batched).await;
        assert_eq!(state(&env, &code).await, "REVEAL", "batched {batched}");
        let r = reveals(&env, &code).await;
        assert_eq!(r.len(), 1, "batched {batched}");
        assert_eq!(r[0].answered_count, 2, "batched {batched}: {r:?}");
    }
}

/// An accepted answer to question 0, through `answer_batch` (a batch of one) or `answer_submit`.
async fn answer(env: &Env, code: &str, player_id: &str, idx: usize, batched: bool) {
    if batched {
        let r = env
            .game
            .answer_batch(
                code,
                &[BatchedAnswer {
                    player_id,
                    q_index: 0,
                    answer_idx: idx as u32,
                }],
            )
            .await
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
    } else {
        env.game
            .answer_submit(code, player_id, 0, idx as u32)
            .await
            .unwrap();
    }
}
