//! The control plane's Prometheus counters, rendered by hand (`/metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Process-wide counters.
pub struct Metrics {
    pub rooms_created: AtomicU64,
    pub quizzes_written: AtomicU64,
    pub auth_failures: AtomicU64,
    pub games_stored: AtomicU64,
    pub results_rows: AtomicU64,
    pub results_retries: AtomicU64,
    pub results_lost: AtomicU64,
    pub results_seconds_total_ms: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

pub static METRICS: Metrics = Metrics {
    rooms_created: AtomicU64::new(0),
    quizzes_written: AtomicU64::new(0),
    auth_failures: AtomicU64::new(0),
    games_stored: AtomicU64::new(0),
    results_rows: AtomicU64::new(0),
    results_retries: AtomicU64::new(0),
    results_lost: AtomicU64::new(0),
    results_seconds_total_ms: AtomicU64::new(0),
    errors: Mutex::new(BTreeMap::new()),
};

impl Metrics {
    pub fn api_error(&self, code: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        counter(
            "ringside_control_rooms_created_total",
            "Rooms created through the API.",
            self.rooms_created.load(Relaxed),
        );
        counter(
            "ringside_control_quizzes_written_total",
            "Quizzes created or updated.",
            self.quizzes_written.load(Relaxed),
        );
        counter(
            "ringside_control_auth_failures_total",
            "Requests refused for a missing or wrong API key.",
            self.auth_failures.load(Relaxed),
        );
        counter(
            "ringside_control_games_stored_total",
            "Ended games whose results were stored in PostgreSQL.",
            self.games_stored.load(Relaxed),
        );
        counter(
            "ringside_control_results_rows_total",
            "Player result rows stored.",
            self.results_rows.load(Relaxed),
        );
        counter(
            "ringside_control_results_retries_total",
            "Failed attempts to store a game's results (retried).",
            self.results_retries.load(Relaxed),
        );
        counter(
            "ringside_control_results_lost_total",
            "Ended games whose room was gone before export.",
            self.results_lost.load(Relaxed),
        );
        counter(
            "ringside_control_results_store_ms_total",
            "Milliseconds spent storing games' results.",
            self.results_seconds_total_ms.load(Relaxed),
        );
        out.push_str("# HELP ringside_control_api_errors_total API refusals by error code.\n# TYPE ringside_control_api_errors_total counter\n");
        for (code, n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.push_str(&format!(
                "ringside_control_api_errors_total{{code=\"{code}\"}} {n}\n"
            ));
        }
        out
    }
}
