//! Results as CSV (RFC 4180: comma-separated, CRLF line ends, fields with `"` `,` CR or LF quoted with
//! `"` doubled). A player's name is text a stranger chose: a cell starting with `=`, `+`, `-`, `@`, TAB or
//! CR would be run as a formula by a spreadsheet (CSV injection), so such a cell gets a leading `'`.

use ringside_lua::game::ExportedAnswer;

/// One CSV field, neutralised and quoted as needed.
pub fn field(s: &str) -> String {
    let neutral = match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    };
    if neutral.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

/// The header row for a game of `questions` questions played.
pub fn header(questions: usize) -> String {
    let mut cols = vec![
        "rank".to_string(),
        "name".into(),
        "score".into(),
        "correct".into(),
    ];
    for q in 1..=questions {
        cols.push(format!("q{q}_answer"));
        cols.push(format!("q{q}_ms"));
        cols.push(format!("q{q}_points"));
    }
    cols.join(",") + "\r\n"
}

/// One player's row. `answers` has one entry per question played (`null` when unanswered).
pub fn row(
    rank: i32,
    name: &str,
    score: i64,
    correct: i32,
    answers: &[Option<ExportedAnswer>],
    questions: usize,
) -> String {
    let mut cols = vec![
        rank.to_string(),
        field(name),
        score.to_string(),
        correct.to_string(),
    ];
    for q in 0..questions {
        match answers.get(q).and_then(Option::as_ref) {
            Some(a) => {
                // answers are 1-based for people, like the columns
                cols.push((a.answer_idx + 1).to_string());
                cols.push(a.ms.map(|m| m.to_string()).unwrap_or_default());
                cols.push(a.points.to_string());
            }
            None => cols.extend([String::new(), String::new(), String::new()]),
        }
    }
    cols.join(",") + "\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_specials_quoted() {
        assert_eq!(field("Ada"), "Ada");
        assert_eq!(
            field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("+cmd"), "'+cmd");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn rows_have_one_triple_per_question() {
        let a = Some(ExportedAnswer {
            answer_idx: 1,
            ms: Some(1234),
            points: 1450,
        });
        assert_eq!(
            header(2),
            "rank,name,score,correct,q1_answer,q1_ms,q1_points,q2_answer,q2_ms,q2_points\r\n"
        );
        assert_eq!(
            row(1, "Ada", 1450, 1, &[a, None], 2),
            "1,Ada,1450,1,2,1234,1450,,,\r\n"
        );
    }
}
