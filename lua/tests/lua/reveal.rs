//! The reveal: what is published on the room's channel equals the room log, and the correct answer
//! and the explanation appear in neither before the question's reveal.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_testkit::Backend;

on_both_backends!(published_events_equal_the_log_and_hide_the_answer_until_the_reveal);

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
