//! Personal results: every player gets their own `game:answer:result` for every question, with the values
//! Redis scored, even with `revealPauseMs` 0 — where the next question opens the moment a question is
//! scored, so the edge fetches the results while that question is already open — and in a room big
//! enough (2,000 players) to be scored in several `score` steps driven by the engine.

use super::*;
use std::collections::HashMap;

const PLAYERS: usize = 2_000;
const QUESTIONS: u32 = 3;

/// One player: joins, answers every question as soon as it shows (option `i % options`, so some are
/// right and some wrong), and collects every `game:answer:result` until `game:end` and its own
/// results of all questions have arrived.
async fn play(
    addr: std::net::SocketAddr,
    code: String,
    i: usize,
    joined: tokio::sync::mpsc::Sender<()>,
) -> (String, Vec<AnswerResult>) {
    let codec = if i.is_multiple_of(2) {
        Codec::Json
    } else {
        Codec::Msgpack
    };
    let mut c = Client::connect(addr, codec).await;
    let ack = join(&mut c, &code, &format!("p{i}")).await;
    joined.send(()).await.unwrap();
    let mut results = Vec::new();
    let mut ended = false;
    while !ended || results.len() < QUESTIONS as usize {
        match c.next().await.event {
            ServerEvent::QuestionShow(show) => {
                let q = show.q_index;
                let answer = (i as u32) % show.answers.len() as u32;
                let hash = answer_hash(&ack.answer_secret, &code, &ack.player_id, q, answer);
                c.send(ClientEvent::AnswerSubmit(AnswerSubmit {
                    game_code: code.clone(),
                    q_index: q,
                    answer_idx: answer,
                    client_time: 0.0,
                    answer_hash: hash,
                }))
                .await;
            }
            ServerEvent::AnswerAck(a) => assert!(a.received),
            ServerEvent::AnswerResult(r) => results.push(r),
            ServerEvent::GameEnd(_) => ended = true,
            ServerEvent::Error(e) => panic!("p{i}: {e:?}"),
            _ => {}
        }
    }
    (ack.player_id, results)
}

/// What every player's results must be, from what Redis stored: each scored answer
/// `idx:serverMs:points:streak` of each question, totals summed question by question, ranks 1 + the
/// number of strictly higher totals.
async fn expected(
    conn: &mut Redis,
    code: &str,
    ids: &[String],
) -> HashMap<String, Vec<AnswerResult>> {
    let correct = [1u32, 0, 2]; // QUIZ
    let mut total: HashMap<&str, i64> = ids.iter().map(|id| (id.as_str(), 0)).collect();
    let mut out: HashMap<String, Vec<AnswerResult>> = HashMap::new();
    for q in 0..QUESTIONS {
        let stored: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}:q:{q}", ringside_protocol::keys::room(code)))
            .query_async(conn)
            .await
            .unwrap();
        let mut mine = Vec::new();
        for id in ids {
            let f: Vec<i64> = stored[&format!("a:{id}")]
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(f.len(), 4, "scored: idx:ms:points:streak");
            *total.get_mut(id.as_str()).unwrap() += f[2];
            mine.push((id, f));
        }
        for (id, f) in mine {
            let t = total[id.as_str()];
            let higher = total.values().filter(|v| **v > t).count() as u32;
            out.entry(id.clone()).or_default().push(AnswerResult {
                q_index: q,
                answer_idx: Some(f[0] as u32),
                correct: f[0] as u32 == correct[q as usize],
                points: f[2],
                total: t,
                rank: higher + 1,
                streak: f[3] as u32,
                total_players: PLAYERS as u32,
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_player_gets_every_result_with_no_reveal_pause_in_a_room_of_2000() {
    let mut s = stack_full(Backend::Standalone, false, AddressLimits::off(), |_| {}).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room_with(
        &mut host,
        RoomSettings {
            countdown_ms: Some(0),
            reveal_pause_ms: Some(0),
            ..Default::default()
        },
    )
    .await;

    let (joined_tx, mut joined) = tokio::sync::mpsc::channel(PLAYERS);
    let mut players = tokio::task::JoinSet::new();
    for i in 0..PLAYERS {
        let game = play(addr, code.clone(), i, joined_tx.clone());
        // a bound on the whole game: a lost result must fail the test, not wait (pings keep a socket busy)
        players.spawn(async move {
            tokio::time::timeout(Duration::from_secs(300), game)
                .await
                .unwrap_or_else(|_| panic!("p{i}: not every result and the end within 300 s"))
        });
        if i % 200 == 199 {
            tokio::task::yield_now().await;
        }
    }
    drop(joined_tx);
    for n in 0..PLAYERS {
        let one = tokio::time::timeout(Duration::from_secs(60), joined.recv()).await;
        if !matches!(one, Ok(Some(()))) {
            // a player task failed: its panic says why
            while let Some(r) = players.join_next().await {
                r.unwrap();
            }
            panic!("{n} of {PLAYERS} players joined");
        }
    }
    start_game(&mut host, &code).await;

    let mut got = HashMap::new();
    while let Some(r) = players.join_next().await {
        let (id, results) = r.unwrap();
        got.insert(id, results);
    }
    let ids: Vec<String> = got.keys().cloned().collect();
    let want = expected(&mut s.conn, &code, &ids).await;
    for (id, mut results) in got {
        results.sort_by_key(|r| r.q_index);
        assert_eq!(results, want[&id], "results of {id}");
    }
}

/// Sends `game:leaderboard` of question `q` into room `code` as Redis would (`emit`).
async fn emit_leaderboard(s: &mut Stack, code: &str, q: u32) -> u64 {
    let data = format!(r#"{{"qIndex":{q},"rankings":[],"totalPlayers":2}}"#);
    emit(&mut s.conn, code, "game:leaderboard", &data).await
}

/// Sends `game:question:reveal` of question `q` into room `code` as Redis would (`emit`).
async fn emit_reveal(s: &mut Stack, code: &str, q: u32) -> u64 {
    let data = format!(
        r#"{{"qIndex":{q},"correctIndex":0,"distribution":[1,1,0,0],"answeredCount":2,"totalCount":2,"skipped":false}}"#
    );
    emit(&mut s.conn, code, "game:question:reveal", &data).await
}

/// The next frame `c` reads is the player's result, the same as `before`.
/// The question index of the client's next `game:question:reveal` (other events before it skipped).
async fn next_reveal(c: &mut Client) -> u32 {
    c.until(|e| match e {
        ServerEvent::QuestionReveal(r) => Some(r.q_index),
        _ => None,
    })
    .await
}

async fn next_is_the_same_result(c: &mut Client, before: &AnswerResult) {
    match c.next().await.event {
        ServerEvent::AnswerResult(r) => assert_eq!(&r, before, "the same result again"),
        other => panic!("expected the player's result, got {other:?}"),
    }
}

/// The edge's counts of frames written and of the writes that carried them.
fn frames_and_writes(s: &Stack) -> (u64, u64) {
    let m = s.edge.metrics();
    (
        m.frames_out_total
            .load(std::sync::atomic::Ordering::Relaxed),
        m.writes_total.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// [`frames_and_writes`] once they stand still: the counters move just after each write, so a write
/// the clients have already read may not be counted yet. Waits until they hold for 200 ms (bounded).
async fn settled_frames_and_writes(s: &Stack) -> (u64, u64) {
    let mut base = frames_and_writes(s);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = frames_and_writes(s);
        if now == base {
            break;
        }
        base = now;
    }
    base
}

/// [`frames_and_writes`] once `n` frames past `frames0` are counted (bounded): both counters move in the
/// same flush, after its write.
async fn counted_frames_and_writes(s: &Stack, frames0: u64, n: u64) -> (u64, u64) {
    let mut counted = frames_and_writes(s);
    for _ in 0..500 {
        if counted.0 - frames0 >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        counted = frames_and_writes(s);
    }
    counted
}

/// A room of two players (JSON and MessagePack) with these settings (no countdown), its game started, up
/// to each player's `game:question:show` of question 0.
async fn two_players_shown_question_0(
    s: &Stack,
    settings: RoomSettings,
) -> (Client, String, [(Client, RoomJoinAck); 2]) {
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let settings = RoomSettings {
        countdown_ms: Some(0),
        ..settings
    };
    let code = create_room_with(&mut host, settings).await;
    let mut players = [seat(addr, &code, 0).await, seat(addr, &code, 1).await];
    start_game(&mut host, &code).await;
    for (c, _) in players.iter_mut() {
        c.until(|e| matches!(e, ServerEvent::QuestionShow(_)).then_some(()))
            .await;
    }
    (host, code, players)
}

/// A room of two players (JSON and MessagePack) whose question 0 both answered, up to each player's
/// `game:answer:result` of it (returned in seat order); nothing else happens in the room afterwards
/// (a 600 s reveal pause).
async fn two_players_past_question_0(
    s: &Stack,
) -> (
    Client,
    String,
    [(Client, RoomJoinAck); 2],
    Vec<AnswerResult>,
) {
    let (host, code, mut players) = two_players_shown_question_0(
        s,
        RoomSettings {
            reveal_pause_ms: Some(600_000),
            ..Default::default()
        },
    )
    .await;
    for (i, (c, ack)) in players.iter_mut().enumerate() {
        c.send(answer_submit(&code, ack, 0, i as u32)).await;
    }
    let mut results = Vec::new();
    for (c, _) in players.iter_mut() {
        let r = c
            .until(|e| match e {
                ServerEvent::AnswerResult(r) => Some(r.clone()),
                _ => None,
            })
            .await;
        assert_eq!(r.q_index, 0);
        results.push(r);
    }
    (host, code, players, results)
}

/// A player's leaderboard waits in its send queue for the player's own result, and both leave in one
/// write; a leaderboard whose result cannot come (its question is not scored: `results` refuses)
/// leaves without it; once the room's leaderboards are seen to follow their reveals closely, the
/// player's reveal waits as well and all three leave in one write. The hold is 60 s here, longer than a client waits for a frame (30 s), so only
/// the result or the refusal can have released it — nothing here depends on how fast the machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_players_leaderboard_leaves_with_their_result_in_one_write() {
    let mut s = holding_stack(Duration::from_secs(60), Duration::from_secs(60)).await;
    // Question 0, answered by both (its reveal, leaderboard and each result come from one call).
    let (mut host, code, mut players, first) = two_players_past_question_0(&s).await;
    host.until(|e| matches!(e, ServerEvent::Leaderboard(_)).then_some(()))
        .await;

    // The leaderboard of question 0 again: the edge fetches each player's result and sends it with it.
    let (frames0, writes0) = settled_frames_and_writes(&s).await;
    emit_leaderboard(&mut s, &code, 0).await;
    for ((c, _), before) in players.iter_mut().zip(&first) {
        let q = c
            .until(|e| match e {
                ServerEvent::Leaderboard(l) => Some(l.q_index),
                _ => None,
            })
            .await;
        assert_eq!(q, 0);
        next_is_the_same_result(c, before).await;
    }
    host.until(|e| matches!(e, ServerEvent::Leaderboard(_)).then_some(()))
        .await;
    // 5 frames: the host's leaderboard, and each player's leaderboard and result.
    let counted = counted_frames_and_writes(&s, frames0, 5).await;
    assert_eq!(counted.0 - frames0, 5, "frames written");
    assert_eq!(
        counted.1 - writes0,
        3,
        "writes: one for the host, one per player for their leaderboard and result together"
    );

    // The reveal of question 0 again, then its leaderboard: this room's leaderboards follow their
    // reveals closely (question 0's came in the reveal's own call), so a player's reveal now waits too
    // and leaves with the leaderboard and the result. The host gets each at once.
    let (frames0, writes0) = settled_frames_and_writes(&s).await;
    emit_reveal(&mut s, &code, 0).await;
    host.until(|e| matches!(e, ServerEvent::QuestionReveal(_)).then_some(()))
        .await;
    emit_leaderboard(&mut s, &code, 0).await;
    for ((c, _), before) in players.iter_mut().zip(&first) {
        let q = next_reveal(c).await;
        assert_eq!(q, 0);
        match c.next().await.event {
            ServerEvent::Leaderboard(l) => assert_eq!(l.q_index, 0),
            other => panic!("expected the leaderboard after the reveal, got {other:?}"),
        }
        next_is_the_same_result(c, before).await;
    }
    host.until(|e| matches!(e, ServerEvent::Leaderboard(_)).then_some(()))
        .await;
    let counted = counted_frames_and_writes(&s, frames0, 8).await;
    assert_eq!(counted.0 - frames0, 8, "frames written");
    assert_eq!(
        counted.1 - writes0,
        4,
        "writes: two for the host, one per player for their reveal, leaderboard and result together"
    );

    // Question 2 is not scored: `results` refuses, and the held leaderboards leave alone.
    emit_leaderboard(&mut s, &code, 2).await;
    for (c, _) in players.iter_mut() {
        let q = c
            .until(|e| match e {
                ServerEvent::Leaderboard(l) => Some(l.q_index),
                _ => None,
            })
            .await;
        assert_eq!(q, 2);
    }
}

/// A standalone stack with these `--leaderboard-hold-ms` and `--reveal-hold-ms`, the edge's own keepalive
/// pings 120 s away, so that none lands in a window whose frames and writes a test counts.
async fn holding_stack(leaderboard_hold: Duration, reveal_hold: Duration) -> Stack {
    stack_game(
        Backend::Standalone,
        false,
        AddressLimits::off(),
        leaderboard_hold,
        reveal_hold,
        |c| {
            c.ping_interval = Duration::from_secs(120);
            c.idle_timeout = Duration::from_secs(300);
        },
    )
    .await
}

/// A player's reveal held for its leaderboard leaves alone when the leaderboard does not come within the
/// hold (a room scored in many calls, a stalled engine): not before the hold (it was held), and without
/// anything else sent to the socket (the edge's own keepalive is 120 s away; the client waits 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_reveal_leaves_alone_when_its_leaderboard_is_late() {
    let hold = Duration::from_secs(2);
    let mut s = holding_stack(hold, hold).await;
    // Question 0, answered by both: its reveal and leaderboard come from one call, so the next reveal
    // is held for its leaderboard.
    let (_host, code, mut players, _) = two_players_past_question_0(&s).await;
    // A reveal of question 1, whose leaderboard never comes.
    let sent = std::time::Instant::now();
    emit_reveal(&mut s, &code, 1).await;
    for (c, _) in players.iter_mut() {
        let q = next_reveal(c).await;
        assert_eq!(q, 1, "the held reveal arrives without its leaderboard");
        assert!(sent.elapsed() >= hold, "the reveal was not held");
    }
}

/// A room's first reveal waits for its leaderboard too (the room has no gap measured yet): held for the
/// whole hold here, where no leaderboard follows, and then sent alone. Nobody answers and the question
/// lasts 5 minutes, so the only reveal is the one sent here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_first_reveal_is_held_as_well() {
    let hold = Duration::from_secs(2);
    let mut s = holding_stack(hold, hold).await;
    let (_host, code, mut players) = two_players_shown_question_0(
        &s,
        RoomSettings {
            time_per_q_ms: Some(300_000),
            ..Default::default()
        },
    )
    .await;
    let sent = std::time::Instant::now();
    emit_reveal(&mut s, &code, 0).await;
    for (c, _) in players.iter_mut() {
        assert_eq!(next_reveal(c).await, 0);
        assert!(sent.elapsed() >= hold, "the first reveal was not held");
    }
}

/// `--reveal-hold-ms 0`: a player's reveal is never held, even in a room whose leaderboards follow their
/// reveals closely; the leaderboard still waits for the player's result (60 s here, longer than a client
/// waits for a frame: the reveal can only have arrived because it was not held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reveal_hold_sends_the_reveal_at_once() {
    let mut s = holding_stack(Duration::from_secs(60), Duration::ZERO).await;
    // Question 0 and its leaderboard came from one call: with a hold, the next reveal would wait.
    let (mut host, code, mut players, first) = two_players_past_question_0(&s).await;
    host.until(|e| matches!(e, ServerEvent::Leaderboard(_)).then_some(()))
        .await;
    let (frames0, writes0) = settled_frames_and_writes(&s).await;
    emit_reveal(&mut s, &code, 0).await;
    for (c, _) in players.iter_mut() {
        let q = next_reveal(c).await;
        assert_eq!(q, 0, "the reveal arrives alone, before any leaderboard");
    }
    host.until(|e| matches!(e, ServerEvent::QuestionReveal(_)).then_some(()))
        .await;
    let counted = counted_frames_and_writes(&s, frames0, 3).await;
    assert_eq!(
        (counted.0 - frames0, counted.1 - writes0),
        (3, 3),
        "one reveal per socket, each in its own write"
    );
    // The leaderboard still waits for each player's result and leaves with it.
    emit_leaderboard(&mut s, &code, 0).await;
    for ((c, _), before) in players.iter_mut().zip(&first) {
        match c.next().await.event {
            ServerEvent::Leaderboard(l) => assert_eq!(l.q_index, 0),
            other => panic!("expected the leaderboard, got {other:?}"),
        }
        next_is_the_same_result(c, before).await;
    }
}
