//! Encode and decode of the hot events in both codecs: `game:question:show` (fanned out to every player),
//! `game:answer:submit` (every player, every question) and `game:question:reveal`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringside_protocol::envelope::decode;
use ringside_protocol::events::*;
use ringside_protocol::{ClientEvent, Codec, Envelope, ServerEvent};
use std::hint::black_box;

fn question_show() -> Envelope<ServerEvent> {
    Envelope::new(ServerEvent::QuestionShow(QuestionShow {
        q_index: 3,
        total_questions: 10,
        question: "Which planet has the most confirmed moons as of 2025?".into(),
        answers: vec![
            "Jupiter".into(),
            "Saturn".into(),
            "Uranus".into(),
            "Neptune".into(),
        ],
        ends_at: 1_795_500_023_000,
        time_limit_ms: 20_000,
        points: 1000,
        image_url: None,
        show_at: None,
        sealed: None,
    }))
    .with_seq(41)
}

fn answer_submit() -> Envelope<ClientEvent> {
    Envelope::new(ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: "K7QP2M".into(),
        q_index: 3,
        answer_idx: 1,
        client_time: 1_795_500_009_412.0,
        answer_hash: "0c6bd2fa1bd1c6e4b9b3e1d0c7e35f1b1c0b4a31e7a5cf4e8d43a5b6f0b1d2e3".into(),
    }))
    .with_rid(Some(17))
}

fn reveal() -> Envelope<ServerEvent> {
    Envelope::new(ServerEvent::QuestionReveal(QuestionReveal {
        q_index: 3,
        correct_index: 1,
        distribution: vec![12_040, 60_101, 7_020, 2_100],
        answered_count: 81_261,
        total_count: 100_000,
        explanation_text: Some(
            "Saturn overtook Jupiter with 62 new moons announced in 2023.".into(),
        ),
        skipped: false,
    }))
    .with_seq(42)
}

fn bench_event<E: ringside_protocol::events::Event>(
    c: &mut Criterion,
    name: &str,
    env: &Envelope<E>,
) {
    let mut g = c.benchmark_group(name);
    for codec in Codec::ALL {
        let label = match codec {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
        };
        let bytes = env.encode(codec);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode/{label}"), |b| {
            b.iter(|| black_box(env.encode(codec)))
        });
        g.bench_function(format!("decode/{label}"), |b| {
            b.iter_batched_ref(
                || bytes.clone(),
                |buf| black_box(decode::<E>(codec, buf).unwrap()),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn protocol(c: &mut Criterion) {
    bench_event(c, "question_show", &question_show());
    bench_event(c, "answer_submit", &answer_submit());
    bench_event(c, "reveal", &reveal());
}

criterion_group!(benches, protocol);
criterion_main!(benches);
