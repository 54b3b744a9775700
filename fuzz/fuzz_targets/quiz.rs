//! The quiz importer (`lua/src/quiz.rs`, what `ringside-quiz import` and the control plane run on an
//! uploaded file): `Quiz::from_json` (parse + `validate`) must not panic, and an accepted quiz must
//! survive its own storage format (`to_json` → `from_json`) unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringside_fuzz::quiz::Quiz;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(quiz) = Quiz::from_json(json) {
        let stored = quiz.to_json();
        let back = Quiz::from_json(&stored).expect("a stored quiz is accepted again");
        assert_eq!(back, quiz);
    }
});
