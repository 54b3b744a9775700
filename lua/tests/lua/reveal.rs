//! The reveal: what is published on the room's channel equals the room log, and the correct answer
//! and the explanation appear in neither before the question's reveal.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::keys;
use ringside_testkit::Backend;
use std::time::Duration;

on_both_backends!(published_events_equal_the_log_and_hide_the_answer_until_the_reveal);

/// Reads the room's sharded channel on the node that owns its slot, through a plain connection.
fn subscribe(env: &Env, code: &str) -> redis::Connection {
    let channel = keys::room_channel(code);
    let url = match env.backend {
        Backend::Standalone => env.urls[0].clone(),
        Backend::Cluster => node_of(env, &channel),
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    conn.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(&channel).get_packed_command())
        .unwrap();
    let _confirm = conn.recv_response().unwrap();
    conn
}

fn drain(conn: &mut redis::Connection) -> Vec<String> {
    conn.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut out = Vec::new();
    while let Ok(v) = conn.recv_response() {
        let items: Vec<redis::Value> = match v {
            redis::Value::Array(items) => items,
            redis::Value::Push { data, .. } => data,
            _ => continue,
        };
        let payload: String = redis::from_redis_value(items.last().unwrap().clone()).unwrap();
        out.push(payload);
    }
    out
}

async fn published_events_equal_the_log_and_hide_the_answer_until_the_reveal(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("pub"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let mut sub = subscribe(&env, &code);
    let players = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &created.host_token).await;
    for qi in 0..2u32 {
        if qi == 1 {
            assert!(
                fire_latest(&env, &code, TimerKind::NextQuestion)
                    .await
                    .fired
            );
        }
        for (i, p) in players.iter().enumerate() {
            let answer = if i == 0 {
                correct(qi as usize)
            } else {
                wrong(qi as usize)
            } as u32;
            let ack = env
                .game
                .answer_submit(&code, &p.player_id, qi, answer)
                .await
                .unwrap();
            let text = serde_json::to_string(&ack).unwrap();
            assert!(!text.contains("correct"), "{text}");
        }
    }
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    let published = tokio::task::block_in_place(|| drain(&mut sub));
    let logged: Vec<String> = log(&env, &code)
        .await
        .into_iter()
        .map(|(_, raw, _)| raw)
        .collect();
    assert_eq!(
        published, logged,
        "every published message is the logged envelope, byte for byte"
    );
    let mut revealed = 0;
    for raw in &published {
        if raw.contains("\"event\":\"game:question:reveal\"") {
            revealed += 1;
            continue;
        }
        for qi in revealed..2 {
            assert!(!raw.contains(&secret_explanation(qi)), "{raw}");
        }
        assert!(!raw.contains("correctIndex"), "{raw}");
    }
    assert_eq!(revealed, 2);
}
