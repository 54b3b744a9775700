//! The JSON quiz format, its validation, and where a quiz lives in Redis.
//!
//! ```json
//! { "id": "general-knowledge", "title": "General knowledge",
//!   "questions": [
//!     { "text": "Which planet is largest?", "options": ["Mars", "Jupiter", "Venus"], "correct": 1,
//!       "explanation": "Jupiter is 11 Earths wide.", "timeLimitMs": 20000, "points": 1000,
//!       "imageUrl": "https://example.org/jupiter.png" } ] }
//! ```
//! `correct` is the 0-based index of the right option. `timeLimitMs` (default 20000), `points` (default
//! 1000), `explanation` and `imageUrl` are optional. Unknown fields are refused, so a typo
//! (`"correctIndex"`) is an error rather than a silently wrong quiz.
//!
//! A quiz is stored as this JSON at `ringside_protocol::keys::quiz(id)` (`quiz:{id}`, its own slot).
//! `room_create` cannot read another slot, so the caller reads it and passes it in ARGV; the function
//! validates it again and copies it into the room.

use ringside_protocol::events::is_quiz_id;
use ringside_protocol::limits::{MAX_OPTIONS, MIN_OPTIONS};
use serde::{Deserialize, Serialize};

pub const MAX_QUESTIONS: usize = 100;
pub const MAX_TITLE_CHARS: usize = 120;
pub const MAX_TEXT_CHARS: usize = 500;
pub const MAX_OPTION_CHARS: usize = 200;
pub const MAX_EXPLANATION_CHARS: usize = 1000;
pub const MAX_IMAGE_URL_BYTES: usize = 2048;
pub const MIN_TIME_LIMIT_MS: u32 = 1_000;
pub const MAX_TIME_LIMIT_MS: u32 = 300_000;
pub const MAX_POINTS: u32 = 100_000;
pub const DEFAULT_TIME_LIMIT_MS: u32 = 20_000;
pub const DEFAULT_POINTS: u32 = 1_000;

/// A quiz: an id, a title and its questions in play order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quiz {
    /// 1..=64 characters of `[A-Za-z0-9_-]`; the key is `quiz:{id}`.
    pub id: String,
    pub title: String,
    pub questions: Vec<Question>,
}

/// One question. The correct option is only ever revealed by `game:question:reveal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Question {
    pub text: String,
    /// 2..=8 options, in display order.
    pub options: Vec<String>,
    /// 0-based index into `options`.
    pub correct: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    #[serde(default = "default_time_limit")]
    pub time_limit_ms: u32,
    /// Base points of a correct answer (a room's `basePoints` setting overrides it).
    #[serde(default = "default_points")]
    pub points: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

fn default_time_limit() -> u32 {
    DEFAULT_TIME_LIMIT_MS
}

fn default_points() -> u32 {
    DEFAULT_POINTS
}

/// Why a quiz is not acceptable. Question errors name the 0-based question index and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuizError {
    #[error("not a quiz: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Quiz { field: &'static str, reason: String },
    #[error("questions[{index}].{field}: {reason}")]
    Question {
        index: usize,
        field: &'static str,
        reason: String,
    },
}

fn text_ok(s: &str, max: usize, newlines: bool) -> Result<(), String> {
    let n = s.trim().chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if s.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if s.chars()
        .any(|c| c.is_control() && !(newlines && c == '\n'))
    {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

impl Quiz {
    /// Parses and validates quiz JSON.
    pub fn from_json(json: &str) -> Result<Quiz, QuizError> {
        let quiz: Quiz = serde_json::from_str(json).map_err(|e| QuizError::Json(e.to_string()))?;
        quiz.validate()?;
        Ok(quiz)
    }

    /// The JSON stored in Redis (and passed to `room_create`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a quiz always serializes")
    }

    /// Checks every rule; the first broken one is reported.
    pub fn validate(&self) -> Result<(), QuizError> {
        let quiz_err = |field, reason: &str| QuizError::Quiz {
            field,
            reason: reason.to_string(),
        };
        if !is_quiz_id(&self.id) {
            return Err(quiz_err("id", "must be 1..=64 characters of [A-Za-z0-9_-]"));
        }
        text_ok(&self.title, MAX_TITLE_CHARS, false).map_err(|r| quiz_err("title", &r))?;
        if self.questions.is_empty() || self.questions.len() > MAX_QUESTIONS {
            return Err(quiz_err(
                "questions",
                &format!("must have 1..={MAX_QUESTIONS} questions"),
            ));
        }
        for (index, q) in self.questions.iter().enumerate() {
            let err = |field, reason: String| QuizError::Question {
                index,
                field,
                reason,
            };
            text_ok(&q.text, MAX_TEXT_CHARS, true).map_err(|r| err("text", r))?;
            if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&q.options.len()) {
                return Err(err(
                    "options",
                    format!(
                        "must have {MIN_OPTIONS}..={MAX_OPTIONS} options, has {}",
                        q.options.len()
                    ),
                ));
            }
            for (i, o) in q.options.iter().enumerate() {
                text_ok(o, MAX_OPTION_CHARS, false)
                    .map_err(|r| err("options", format!("option {i} {r}")))?;
                if q.options[..i]
                    .iter()
                    .any(|p| p.trim().eq_ignore_ascii_case(o.trim()))
                {
                    return Err(err(
                        "options",
                        format!("option {i} repeats an earlier option"),
                    ));
                }
            }
            if q.correct as usize >= q.options.len() {
                return Err(err(
                    "correct",
                    format!(
                        "must be an index into options (0..={})",
                        q.options.len() - 1
                    ),
                ));
            }
            if let Some(e) = &q.explanation {
                text_ok(e, MAX_EXPLANATION_CHARS, true).map_err(|r| err("explanation", r))?;
            }
            if !(MIN_TIME_LIMIT_MS..=MAX_TIME_LIMIT_MS).contains(&q.time_limit_ms) {
                return Err(err(
                    "timeLimitMs",
                    format!("must be {MIN_TIME_LIMIT_MS}..={MAX_TIME_LIMIT_MS}"),
                ));
            }
            if q.points > MAX_POINTS {
                return Err(err("points", format!("must be 0..={MAX_POINTS}")));
            }
            if let Some(u) = &q.image_url {
                let scheme_ok = u.starts_with("https://") || u.starts_with("http://");
                if !scheme_ok
                    || u.len() > MAX_IMAGE_URL_BYTES
                    || u.chars().any(|c| c.is_control() || c == ' ')
                {
                    return Err(err(
                        "imageUrl",
                        format!("must be an http(s) URL of at most {MAX_IMAGE_URL_BYTES} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Quiz {
        Quiz::from_json(
            r#"{"id":"t","title":"T","questions":[{"text":"Q?","options":["a","b"],"correct":1}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_apply() {
        let q = &sample().questions[0];
        assert_eq!(
            (q.time_limit_ms, q.points, q.explanation.clone()),
            (20_000, 1_000, None)
        );
    }

    #[test]
    fn errors_name_the_question_and_field() {
        let mut quiz = sample();
        quiz.questions.push(quiz.questions[0].clone());
        quiz.questions[1].correct = 2;
        assert_eq!(
            quiz.validate(),
            Err(QuizError::Question {
                index: 1,
                field: "correct",
                reason: "must be an index into options (0..=1)".into()
            })
        );
        let mut quiz = sample();
        quiz.questions[0].options = vec!["only".into()];
        assert!(matches!(
            quiz.validate(),
            Err(QuizError::Question {
                index: 0,
                field: "options",
                ..
            })
        ));
        let mut quiz = sample();
        quiz.questions[0].time_limit_ms = 500;
        assert!(matches!(
            quiz.validate(),
            Err(QuizError::Question {
                field: "timeLimitMs",
                ..
            })
        ));
        let mut quiz = sample();
        quiz.questions[0].image_url = Some("javascript:alert(1)".into());
        assert!(matches!(
            quiz.validate(),
            Err(QuizError::Question {
                field: "imageUrl",
                ..
            })
        ));
        let mut quiz = sample();
        quiz.id = "has space".into();
        assert!(matches!(
            quiz.validate(),
            Err(QuizError::Quiz { field: "id", .. })
        ));
        let mut quiz = sample();
        quiz.questions.clear();
        assert!(matches!(
            quiz.validate(),
            Err(QuizError::Quiz {
                field: "questions",
                ..
            })
        ));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = Quiz::from_json(r#"{"id":"t","title":"T","questions":[{"text":"Q","options":["a","b"],"correctIndex":1}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("correctIndex"), "{e}");
    }

    #[test]
    fn the_sample_quizzes_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../quizzes");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let quiz = Quiz::from_json(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    path.file_stem().unwrap().to_str().unwrap(),
                    quiz.id,
                    "file name = quiz id"
                );
                n += 1;
            }
        }
        assert!(n >= 2);
    }
}
