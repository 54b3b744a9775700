//! Service-level objectives: thresholds on the report's numbers, from `--slo KEY=VALUE` flags or a file
//! (`--slo-file`, JSON `{"key": value}` or TOML-style `key = value` lines), checked after the run. A
//! failed objective makes the exit code [`EXIT_SLO_FAILED`] and prints one line naming it.
//!
//! Keys:
//! - `<metric>_<stat>_ms` with a metric of [`Metric`] (`answer_ack`, `question_spread`, ...) and a stat
//!   of `p50 p90 p99 p999 max mean min`, e.g. `answer_ack_p99_ms=10`;
//! - `<metric>_count`, the number of samples;
//! - every counter of [`Counters`] (`missed_events=0`, `connect_failed=0`, ...);
//! - the derived numbers of [`DERIVED`] (`missing_question_receipts=0`, `loadgen_cpu_pct=...`).
//!
//! `KEY=V` and `KEY<=V` mean "at most V"; `KEY>=V` means "at least V". A latency with no samples fails
//! its objective: a run that measured nothing proves nothing.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::metrics::{Counters, Metric, Summary};

/// Exit code of a run whose objectives failed.
pub const EXIT_SLO_FAILED: i32 = 2;

/// Numbers computed by the report (not plain counters) that objectives may name.
pub const DERIVED: &[&str] = &[
    "missing_question_receipts",
    "missing_reveal_receipts",
    "missing_result_receipts",
    "questions_played",
    "error_codes_other_than_expected",
    "loadgen_cpu_pct",
    "watched_cpu_pct",
    "join_ratio",
    "keys_in_time_ratio",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The value must be at most the threshold.
    #[serde(rename = "<=")]
    AtMost,
    /// The value must be at least the threshold.
    #[serde(rename = ">=")]
    AtLeast,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::AtMost => "<=",
            Op::AtLeast => ">=",
        }
    }
}

/// One objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub key: String,
    pub op: Op,
    pub threshold: f64,
}

/// Whether `key` names something the report computes.
pub fn is_known_key(key: &str) -> bool {
    if Counters::NAMES.contains(&key) || DERIVED.contains(&key) {
        return true;
    }
    if let Some(metric) = key.strip_suffix("_count") {
        return Metric::from_name(metric).is_some();
    }
    if let Some(rest) = key.strip_suffix("_ms") {
        if let Some((metric, stat)) = rest.rsplit_once('_') {
            return Metric::from_name(metric).is_some() && Summary::SUFFIXES.contains(&stat);
        }
    }
    false
}

/// Parses `KEY=V`, `KEY<=V` or `KEY>=V`.
pub fn parse(s: &str) -> anyhow::Result<Slo> {
    let (key, op, value) = if let Some((k, v)) = s.split_once(">=") {
        (k, Op::AtLeast, v)
    } else if let Some((k, v)) = s.split_once("<=") {
        (k, Op::AtMost, v)
    } else if let Some((k, v)) = s.split_once('=') {
        (k, Op::AtMost, v)
    } else {
        bail!("objective {s:?}: expected KEY=VALUE, KEY<=VALUE or KEY>=VALUE");
    };
    make(key.trim(), op, value.trim())
}

fn make(key: &str, op: Op, value: &str) -> anyhow::Result<Slo> {
    if !is_known_key(key) {
        bail!(
            "objective {key:?}: unknown key (use <metric>_<p50|p90|p99|p999|max|mean|min>_ms, <metric>_count, \
             a counter such as missed_events, or one of {DERIVED:?}; metrics: {})",
            Metric::ALL.map(|m| m.name()).join(", ")
        );
    }
    let threshold: f64 = value
        .parse()
        .with_context(|| format!("objective {key:?}: {value:?} is not a number"))?;
    if !threshold.is_finite() {
        bail!("objective {key:?}: threshold must be finite");
    }
    Ok(Slo {
        key: key.to_string(),
        op,
        threshold,
    })
}

/// Parses an objectives file: a JSON object (`{"answer_ack_p99_ms": 10, "joined": ">=1000"}`) or
/// TOML-style lines (`answer_ack_p99_ms = 10`, `players_joined = ">=1000"`; `#` comments and
/// `[section]` headers are ignored).
pub fn parse_file(text: &str) -> anyhow::Result<Vec<Slo>> {
    let trimmed = text.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).context("objectives file is not valid JSON")?;
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow!("objectives file must be a JSON object"))?;
        for (k, v) in obj {
            out.push(value_to_slo(k, &v.to_string())?);
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('[') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| anyhow!("line {}: expected key = value", n + 1))?;
            out.push(value_to_slo(k.trim(), v.trim()).with_context(|| format!("line {}", n + 1))?);
        }
    }
    Ok(out)
}

/// A file value: a number (at most) or a string with an operator (`">=1000"`, `"<=5"`).
fn value_to_slo(key: &str, raw: &str) -> anyhow::Result<Slo> {
    let v = raw.trim().trim_matches('"').trim();
    if let Some(x) = v.strip_prefix(">=") {
        make(key, Op::AtLeast, x.trim())
    } else if let Some(x) = v.strip_prefix("<=") {
        make(key, Op::AtMost, x.trim())
    } else {
        make(key, Op::AtMost, v)
    }
}

/// The outcome of one objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub key: String,
    pub op: Op,
    pub threshold: f64,
    /// None: the run produced no value for this key (no samples).
    pub actual: Option<f64>,
    pub pass: bool,
}

impl Outcome {
    /// One line for the terminal: `SLO FAILED answer_ack_p99_ms = 12.3 (want <= 10)`.
    pub fn line(&self) -> String {
        let verdict = if self.pass {
            "SLO ok    "
        } else {
            "SLO FAILED"
        };
        match self.actual {
            Some(a) => format!(
                "{verdict} {} = {} (want {} {})",
                self.key,
                fmt_num(a),
                self.op.symbol(),
                fmt_num(self.threshold)
            ),
            None => format!(
                "{verdict} {}: no samples (want {} {})",
                self.key,
                self.op.symbol(),
                fmt_num(self.threshold)
            ),
        }
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

/// Checks every objective against the report's flat values (`values` lacks keys without samples).
pub fn evaluate(slos: &[Slo], values: &BTreeMap<String, f64>) -> Vec<Outcome> {
    slos.iter()
        .map(|s| {
            let actual = values.get(&s.key).copied();
            let pass = match (actual, s.op) {
                (None, _) => false,
                (Some(a), Op::AtMost) => a <= s.threshold,
                (Some(a), Op::AtLeast) => a >= s.threshold,
            };
            Outcome {
                key: s.key.clone(),
                op: s.op,
                threshold: s.threshold,
                actual,
                pass,
            }
        })
        .collect()
}

/// The objectives every run checks unless `--no-default-slos`: the delivery promises of
/// docs/protocol.md §5 (each room event once, in order) and §4 (an answer gets an outcome, never silence).
pub fn defaults() -> Vec<Slo> {
    [
        "missed_events",
        "duplicate_events",
        "out_of_order_events",
        "answers_without_outcome",
    ]
    .iter()
    .map(|k| Slo {
        key: k.to_string(),
        op: Op::AtMost,
        threshold: 0.0,
    })
    .collect()
}

/// Adds `extra` to `base`, a later objective on the same key replacing an earlier one.
pub fn combine(base: Vec<Slo>, extra: Vec<Slo>) -> Vec<Slo> {
    let mut out = base;
    for s in extra {
        out.retain(|o| !(o.key == s.key && o.op == s.op));
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_each_operator() {
        assert_eq!(
            parse("answer_ack_p99_ms=10").unwrap(),
            Slo {
                key: "answer_ack_p99_ms".into(),
                op: Op::AtMost,
                threshold: 10.0
            }
        );
        assert_eq!(
            parse("question_spread_p999_ms <= 100.5").unwrap().threshold,
            100.5
        );
        assert_eq!(parse("players_joined>=1000").unwrap().op, Op::AtLeast);
        assert_eq!(parse("missed_events=0").unwrap().threshold, 0.0);
        assert_eq!(parse("connect_count>=5").unwrap().key, "connect_count");
        assert_eq!(
            parse("missing_question_receipts=0").unwrap().key,
            "missing_question_receipts"
        );
    }

    #[test]
    fn unknown_keys_and_bad_numbers_are_refused() {
        assert!(parse("answer_ack_p98_ms=10").is_err());
        assert!(parse("nothing=1").is_err());
        assert!(parse("answer_ack_p99_ms=ten").is_err());
        assert!(parse("answer_ack_p99_ms").is_err());
        assert!(parse("answer_ack_p99_ms=inf").is_err());
    }

    #[test]
    fn files_parse_as_json_or_toml_lines() {
        let json = r#"{"answer_ack_p99_ms": 10, "players_joined": ">=200", "missed_events": 0}"#;
        let s = parse_file(json).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s
            .iter()
            .any(|x| x.key == "players_joined" && x.op == Op::AtLeast && x.threshold == 200.0));
        let toml =
            "# objectives\n[slo]\nanswer_ack_p99_ms = 10 # ms\nplayers_joined = \">=200\"\n\n";
        let t = parse_file(toml).unwrap();
        assert_eq!(t.len(), 2);
        assert!(parse_file("answer_ack_p99_ms 10").is_err());
        assert!(parse_file(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn evaluation_compares_and_fails_without_samples() {
        let slos = vec![
            parse("answer_ack_p99_ms=10").unwrap(),
            parse("missed_events=0").unwrap(),
            parse("players_joined>=100").unwrap(),
            parse("reconnect_p99_ms=5000").unwrap(),
        ];
        let values: BTreeMap<String, f64> = [
            ("answer_ack_p99_ms", 12.5),
            ("missed_events", 0.0),
            ("players_joined", 100.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = evaluate(&slos, &values);
        assert_eq!(
            out.iter().map(|o| o.pass).collect::<Vec<_>>(),
            vec![false, true, true, false]
        );
        assert!(
            out[0]
                .line()
                .contains("SLO FAILED answer_ack_p99_ms = 12.500 (want <= 10)"),
            "{}",
            out[0].line()
        );
        assert!(out[3].line().contains("no samples"));
    }

    #[test]
    fn an_answer_without_outcome_fails_a_run_by_default() {
        let values: BTreeMap<String, f64> = [
            ("missed_events", 0.0),
            ("duplicate_events", 0.0),
            ("out_of_order_events", 0.0),
            ("answers_without_outcome", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = evaluate(&defaults(), &values);
        let failed: Vec<_> = out
            .iter()
            .filter(|o| !o.pass)
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(failed, ["answers_without_outcome"]);
    }

    #[test]
    fn a_flag_overrides_the_default_on_the_same_key() {
        let all = combine(defaults(), vec![parse("missed_events=5").unwrap()]);
        assert_eq!(all.iter().filter(|s| s.key == "missed_events").count(), 1);
        assert_eq!(
            all.iter()
                .find(|s| s.key == "missed_events")
                .unwrap()
                .threshold,
            5.0
        );
    }
}
