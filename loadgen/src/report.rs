//! The run's report: built from the merged worker numbers, written as `report.json` (for machines and
//! for `perf/`), `report.html` (self-contained, percentile plots as inline SVG drawn with plotters),
//! `total.hlog` (every metric's merged histogram, one tagged interval each), and a terse summary on
//! stdout. [`Report::values`] flattens it into the keys objectives ([`crate::slo`]) are checked against.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::metrics::{Counters, Hists, Merged, Metric, Summary, Tally};
use crate::plan::Plan;
use crate::slo::Outcome;
use crate::sys::{MachineBusy, MachineInfo};

/// CPU and memory of one process over a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcRow {
    pub name: String,
    pub pid: u32,
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// Average CPU in the window, percent of one core.
    pub cpu_pct: f64,
    /// Largest resident set seen in the window (sampled every second), MiB.
    pub rss_max_mib: f64,
    /// Whether this is part of the load generator (its CPU competes with the server's on one machine).
    pub loadgen: bool,
}

/// CPU use over one phase of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuWindow {
    /// `setup` (rooms + joins), `game` (or `hold`), `total`.
    pub name: String,
    pub wall_s: f64,
    pub processes: Vec<ProcRow>,
    /// Sum over the load generator's processes, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// Sum over the watched processes (`--watch-pid`), percent of one core.
    pub watched_cpu_pct: f64,
    pub machine: Option<MachineBusy>,
    /// The busiest processes that are neither ours nor watched (> 2 % of a core): what competed with the
    /// run on this machine.
    #[serde(default)]
    pub others: Vec<ProcRow>,
    /// Machine busy minus the load generator, the watched processes and the named others, percent of one
    /// core: kernel threads and processes too short-lived to sample (a compiler's many `rustc` runs).
    #[serde(default)]
    pub unattributed_pct: f64,
}

/// Whether every player got every question, reveal and result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub rooms: u32,
    pub rooms_created: u64,
    pub players: u64,
    pub players_joined: u64,
    /// Questions shown, summed over rooms (each room counts the questions any of its players saw).
    pub questions_played: u64,
    pub expected_question_receipts: u64,
    pub question_receipts: u64,
    pub missing_question_receipts: u64,
    pub expected_reveal_receipts: u64,
    pub reveal_receipts: u64,
    pub missing_reveal_receipts: u64,
    pub expected_result_receipts: u64,
    pub result_receipts: u64,
    pub missing_result_receipts: u64,
    /// Share of results that were correct (simulated accuracy, see `--pick-first`).
    pub correct_ratio: f64,
    /// Fair start: `game:question:key` frames received (players that opened with `/ws?sealed=1`).
    #[serde(default)]
    pub keys_received: u64,
    /// Share of those keys that arrived by their question's `showAt` (1 when there were none).
    #[serde(default)]
    pub keys_in_time_ratio: f64,
}

/// One question of one room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuestionRow {
    pub room: u32,
    pub q: u32,
    pub receipts: u64,
    /// First player's receipt minus the question's server start, ms.
    pub first_after_start_ms: f64,
    /// Last player's receipt minus the question's server start, ms.
    pub last_after_start_ms: f64,
    pub spread_ms: f64,
    /// First to last display (fair start: at `showAt` on each player's clock), ms.
    #[serde(default)]
    pub display_spread_ms: f64,
    pub answers: u64,
    pub reveal_receipts: u64,
    pub reveal_spread_ms: f64,
    pub results: u64,
}

/// Bytes on the wire per server event (WebSocket header included).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventRow {
    pub count: u64,
    pub bytes: u64,
    pub bytes_per_event: f64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub scenario: String,
    /// The command line as run.
    pub command: String,
    pub started_at_epoch_ms: u64,
    pub duration_s: f64,
    /// `completed`, `hold elapsed`, `deadline`, ...
    pub stopped_by: String,
    pub plan: Plan,
    pub machine: MachineInfo,
    pub counters: Counters,
    pub delivery: Delivery,
    pub latency_ms: BTreeMap<String, Summary>,
    pub events: BTreeMap<String, EventRow>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    /// Per question (at most the first 1000).
    pub questions: Vec<QuestionRow>,
    pub cpu: Vec<CpuWindow>,
    pub slo: Vec<Outcome>,
    pub slo_passed: bool,
    pub notes: Vec<String>,
}

/// What the coordinator knows besides the merged numbers.
pub struct RunInfo {
    pub command: String,
    pub started_at_epoch_ms: u64,
    pub duration_s: f64,
    pub stopped_by: String,
    pub cpu: Vec<CpuWindow>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn build(plan: &Plan, merged: &Merged, info: RunInfo) -> Report {
        let c = &merged.counters;
        let mut d = Delivery {
            rooms: if plan.scenario.has_rooms() {
                plan.rooms
            } else {
                0
            },
            rooms_created: c.rooms_created,
            players: plan.player_sockets(),
            players_joined: c.players_joined,
            question_receipts: c.question_receipts,
            reveal_receipts: c.reveal_receipts,
            result_receipts: c.result_receipts,
            correct_ratio: if c.result_receipts > 0 {
                c.results_correct as f64 / c.result_receipts as f64
            } else {
                0.0
            },
            keys_received: c.keys_received,
            keys_in_time_ratio: if c.keys_received > 0 {
                1.0 - c.keys_late as f64 / c.keys_received as f64
            } else {
                1.0
            },
            ..Default::default()
        };
        for (room, joined) in &merged.joined_per_room {
            let qs = merged
                .questions
                .range((*room, 0)..=(*room, u32::MAX))
                .map(|(_, q)| q);
            let (mut shown, mut revealed) = (0u64, 0u64);
            for q in qs {
                shown += u64::from(q.show_count > 0);
                revealed += u64::from(q.reveal_count > 0);
            }
            d.questions_played += shown;
            d.expected_question_receipts += joined * shown;
            d.expected_reveal_receipts += joined * revealed;
            d.expected_result_receipts += joined * revealed;
        }
        d.missing_question_receipts = d
            .expected_question_receipts
            .saturating_sub(d.question_receipts);
        d.missing_reveal_receipts = d.expected_reveal_receipts.saturating_sub(d.reveal_receipts);
        d.missing_result_receipts = d.expected_result_receipts.saturating_sub(d.result_receipts);

        let latency_ms = Metric::ALL
            .iter()
            .map(|m| (m.name().to_string(), Summary::of(merged.hists.get(*m))))
            .collect();
        let events = merged
            .events
            .iter()
            .map(|(k, t): (&String, &Tally)| {
                let per = if t.count > 0 {
                    t.bytes as f64 / t.count as f64
                } else {
                    0.0
                };
                (
                    k.clone(),
                    EventRow {
                        count: t.count,
                        bytes: t.bytes,
                        bytes_per_event: per,
                    },
                )
            })
            .collect();
        let ms = |us: u64| us as f64 / 1000.0;
        let questions = merged
            .questions
            .values()
            .take(1000)
            .map(|q| QuestionRow {
                room: q.room,
                q: q.q,
                receipts: q.show_count,
                first_after_start_ms: if q.show_count > 0 {
                    ms(q.show_first_us.saturating_sub(q.start_us))
                } else {
                    0.0
                },
                last_after_start_ms: if q.show_count > 0 {
                    ms(q.show_last_us.saturating_sub(q.start_us))
                } else {
                    0.0
                },
                spread_ms: q.show_spread_us().map_or(0.0, ms),
                display_spread_ms: q.display_spread_us().map_or(0.0, ms),
                answers: q.answers,
                reveal_receipts: q.reveal_count,
                reveal_spread_ms: q.reveal_spread_us().map_or(0.0, ms),
                results: q.result_count,
            })
            .collect();
        Report {
            tool: format!("ringside-loadgen {}", env!("CARGO_PKG_VERSION")),
            scenario: plan.scenario.name().to_string(),
            command: info.command,
            started_at_epoch_ms: info.started_at_epoch_ms,
            duration_s: info.duration_s,
            stopped_by: info.stopped_by,
            plan: plan.clone(),
            machine: crate::sys::machine_info(),
            counters: c.clone(),
            delivery: d,
            latency_ms,
            events,
            errors_by_code: merged.errors_by_code.clone(),
            close_codes: merged.close_codes.clone(),
            questions,
            cpu: info.cpu,
            slo: Vec::new(),
            slo_passed: true,
            notes: info.notes,
        }
    }

    /// The CPU window objectives and the summary use: `game` (or `hold`) when there is one, else `total`.
    pub fn main_cpu(&self) -> Option<&CpuWindow> {
        self.cpu
            .iter()
            .find(|w| w.name == "game" || w.name == "hold")
            .or_else(|| self.cpu.iter().find(|w| w.name == "total"))
    }

    /// Every key an objective may name, with its value. Latency keys are present only when the metric
    /// has samples.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut v = BTreeMap::new();
        for name in Counters::NAMES {
            v.insert(
                name.to_string(),
                self.counters.get(name).unwrap_or(0) as f64,
            );
        }
        for (m, s) in &self.latency_ms {
            v.insert(format!("{m}_count"), s.count as f64);
            if s.count > 0 {
                for suf in Summary::SUFFIXES {
                    v.insert(format!("{m}_{suf}_ms"), s.by_suffix(suf).unwrap_or(0.0));
                }
            }
        }
        let d = &self.delivery;
        v.insert(
            "missing_question_receipts".into(),
            d.missing_question_receipts as f64,
        );
        v.insert(
            "missing_reveal_receipts".into(),
            d.missing_reveal_receipts as f64,
        );
        v.insert(
            "missing_result_receipts".into(),
            d.missing_result_receipts as f64,
        );
        v.insert("questions_played".into(), d.questions_played as f64);
        v.insert("keys_in_time_ratio".into(), d.keys_in_time_ratio);
        if d.players > 0 {
            v.insert(
                "join_ratio".into(),
                d.players_joined as f64 / d.players as f64,
            );
        }
        if let Some(w) = self.main_cpu() {
            v.insert("loadgen_cpu_pct".into(), w.loadgen_cpu_pct);
            v.insert("watched_cpu_pct".into(), w.watched_cpu_pct);
        }
        v
    }

    /// Checks objectives and records the outcome.
    pub fn apply_slos(&mut self, slos: &[crate::slo::Slo]) {
        self.slo = crate::slo::evaluate(slos, &self.values());
        self.slo_passed = self.slo.iter().all(|o| o.pass);
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.counters;
        let d = &self.delivery;
        let p = &self.plan;
        let _ = writeln!(
            s,
            "ringside-loadgen {}: {} rooms, {} players, {} workers, {:.1} s ({})",
            self.scenario, d.rooms, d.players, p.workers, self.duration_s, self.stopped_by
        );
        let _ = writeln!(
            s,
            "sockets: {} connected of {} tried, {} connect failures, {} upgrade failures | rooms {}/{} | joined {}/{}",
            c.sockets_connected, c.sockets_attempted, c.connect_failed, c.upgrade_failed, d.rooms_created, d.rooms,
            d.players_joined, d.players
        );
        if p.scenario.plays() {
            let _ = writeln!(
                s,
                "delivery: questions {}/{} ({} missing), reveals {}/{} ({} missing), results {}/{}; \
                 answers {} sent, {} acked, {} refused; correct {:.0} %",
                d.question_receipts,
                d.expected_question_receipts,
                d.missing_question_receipts,
                d.reveal_receipts,
                d.expected_reveal_receipts,
                d.missing_reveal_receipts,
                d.result_receipts,
                d.expected_result_receipts,
                c.answers_sent,
                c.answer_acks,
                c.answer_errors,
                d.correct_ratio * 100.0
            );
            if d.keys_received > 0 || c.sealed_shows > 0 {
                let _ = writeln!(
                    s,
                    "fair start: {} sealed shows, {} keys ({:.2} % by showAt, {} late), {} not opened",
                    c.sealed_shows,
                    d.keys_received,
                    d.keys_in_time_ratio * 100.0,
                    c.keys_late,
                    c.seal_errors
                );
            }
            let _ = writeln!(
                s,
                "players: {} finished, {} unfinished, {} slow consumers; reconnects {} ok / {} failed",
                c.players_finished, c.players_unfinished, c.slow_consumers, c.reconnects_ok, c.reconnects_failed
            );
            let _ = writeln!(
                s,
                "answer outcomes: {} resent after a lost reply or a refusal, {} of them already answered; \
                 {} without an outcome",
                c.answers_resent, c.answers_already_answered, c.answers_without_outcome
            );
        }
        if c.upgrade_refused + c.overloaded_refusals > 0 {
            let _ = writeln!(
                s,
                "admission: {} upgrades refused (503, retried after Retry-After), {} joins/creates \
                 overloaded ({} joins, {} creates, {} reconnects sent again)",
                c.upgrade_refused, c.overloaded_refusals, c.join_retries, c.create_retries, c.reconnect_retries
            );
        }
        let _ = writeln!(
            s,
            "room seq: {} events, {} missed, {} duplicated, {} out of order, {} covered by snapshots",
            c.room_events, c.missed_events, c.duplicate_events, c.out_of_order_events, c.snapshot_covered_events
        );
        if c.missed_events > 0 {
            // The wire does not mark a superseded frame (docs/protocol.md §5): the room's other players
            // on the same worker tell what each missed seq was.
            let _ = writeln!(
                s,
                "  missed at the end: {} superseded game:answer:progress/game:leaderboard (allowed, §5), \
                 {} real gaps (other events), {} unknown (no player of the room on the worker got them)",
                c.missed_superseded, c.missed_real, c.missed_unknown
            );
        }
        let kv = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let _ = writeln!(
            s,
            "errors: {} | closes: {}",
            kv(&self.errors_by_code),
            kv(&self.close_codes)
        );
        let _ = writeln!(
            s,
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for m in Metric::ALL {
            let Some(x) = self.latency_ms.get(m.name()) else {
                continue;
            };
            if x.count == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "{:<18} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                m.name(),
                x.count,
                x.p50_ms,
                x.p90_ms,
                x.p99_ms,
                x.p999_ms,
                x.max_ms
            );
        }
        for w in &self.cpu {
            // Watched processes of one name (the edge's N processes) are summed: CPU, and the sum of
            // their largest resident sets.
            let mut by_name: Vec<(String, usize, f64, f64)> = Vec::new();
            for p in w.processes.iter().filter(|p| !p.loadgen) {
                match by_name.iter_mut().find(|x| x.0 == p.name) {
                    Some(x) => {
                        x.1 += 1;
                        x.2 += p.cpu_pct;
                        x.3 += p.rss_max_mib;
                    }
                    None => by_name.push((p.name.clone(), 1, p.cpu_pct, p.rss_max_mib)),
                }
            }
            let procs = by_name
                .iter()
                .map(|(n, k, cpu, rss)| {
                    let n = if *k > 1 {
                        format!("{n} x{k}")
                    } else {
                        n.clone()
                    };
                    format!(", {n} {cpu:.1} % ({rss:.0} MiB)")
                })
                .collect::<String>();
            let machine = w
                .machine
                .map(|m| {
                    format!(
                        " | machine busy {:.1} % (softirq {:.1} %)",
                        m.busy_pct, m.softirq_pct
                    )
                })
                .unwrap_or_default();
            let others = w
                .others
                .iter()
                .map(|p| format!(", {} {:.0} %", p.name, p.cpu_pct))
                .collect::<String>();
            let _ = writeln!(
                s,
                "cpu {} ({:.1} s, % of one core): loadgen {:.1} %{procs}{machine} | not ours: unattributed {:.0} %{others}",
                w.name, w.wall_s, w.loadgen_cpu_pct, w.unattributed_pct
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }

    /// Writes `report.json`, `report.html` and `total.hlog` into `dir`.
    pub fn write(&self, dir: &Path, merged: &Merged) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("report.html"), self.html(&merged.hists))?;
        let mut hlog = Vec::new();
        crate::metrics::write_hlog_header(
            &mut hlog,
            std::time::Duration::from_millis(self.started_at_epoch_ms),
            "ringside-loadgen: every metric merged over all workers, one interval for the whole run",
        )?;
        crate::metrics::write_hlog_interval(
            &mut hlog,
            &merged.hists,
            std::time::Duration::ZERO,
            std::time::Duration::from_secs_f64(self.duration_s.max(0.001)),
        )?;
        std::fs::write(dir.join("total.hlog"), hlog)?;
        Ok(())
    }

    /// A self-contained HTML page: summary, objectives, latency table with percentile plots, delivery,
    /// CPU, bytes per event.
    pub fn html(&self, hists: &Hists) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>ringside-loadgen {sc}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
             th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}.fail{{color:#b00;font-weight:bold}}\
             .ok{{color:#070}}pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style></head><body>\
             <h1>ringside-loadgen: {sc}</h1><pre>{cmd}</pre>",
            sc = esc(&self.scenario),
            cmd = esc(&self.command)
        );
        let _ = write!(h, "<h2>Summary</h2><pre>{}</pre>", esc(&self.summary()));
        if !self.slo.is_empty() {
            h.push_str("<h2>Objectives</h2><table><tr><th>key</th><th>want</th><th>actual</th><th>result</th></tr>");
            for o in &self.slo {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{} {}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(&o.key),
                    o.op.symbol(),
                    o.threshold,
                    o.actual
                        .map_or("no samples".to_string(), |a| format!("{a:.3}")),
                    if o.pass { "ok" } else { "fail" },
                    if o.pass { "pass" } else { "FAIL" }
                );
            }
            h.push_str("</table>");
        }
        h.push_str(
            "<h2>Latency</h2><table><tr><th>metric</th><th>what</th><th>count</th><th>p50 ms</th><th>p90</th>\
             <th>p99</th><th>p99.9</th><th>max</th></tr>",
        );
        for m in Metric::ALL {
            let s = Summary::of(hists.get(m));
            if s.count == 0 {
                continue;
            }
            let _ = write!(
                h,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td>\
                 <td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                m.name(),
                esc(m.describe()),
                s.count,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.p999_ms,
                s.max_ms
            );
        }
        h.push_str("</table>");
        for m in Metric::ALL {
            let hist = hists.get(m);
            if hist.is_empty() {
                continue;
            }
            let _ = write!(h, "<h3>{}</h3>", m.name());
            match percentile_svg(m, hist) {
                Ok(svg) => h.push_str(&svg),
                Err(e) => {
                    let _ = write!(h, "<p>plot failed: {}</p>", esc(&e.to_string()));
                }
            }
        }
        h.push_str("<h2>CPU and memory</h2>");
        for w in &self.cpu {
            let _ = write!(
                h,
                "<h3>{} ({:.1} s)</h3><table><tr><th>process</th><th>pid</th><th>CPU s</th><th>CPU % of one core</th>\
                 <th>RSS max MiB</th></tr>",
                esc(&w.name),
                w.wall_s
            );
            for p in &w.processes {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                    esc(&p.name),
                    p.pid,
                    p.cpu_s,
                    p.cpu_pct,
                    p.rss_max_mib
                );
            }
            let _ = write!(
                h,
                "<tr><th>load generator</th><td></td><td></td><td>{:.1}</td><td></td></tr>\
                 <tr><th>watched</th><td></td><td></td><td>{:.1}</td><td></td></tr>",
                w.loadgen_cpu_pct, w.watched_cpu_pct
            );
            if let Some(m) = w.machine {
                let _ = write!(
                    h,
                    "<tr><th>machine ({} cores): busy / user / system / softirq</th><td></td><td></td>\
                     <td>{:.1} / {:.1} / {:.1} / {:.1}</td><td></td></tr>",
                    m.cores, m.busy_pct, m.user_pct, m.system_pct, m.softirq_pct
                );
            }
            for p in &w.others {
                let _ = write!(
                    h,
                    "<tr><td>other: {}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td></td></tr>",
                    esc(&p.name),
                    p.pid,
                    p.cpu_s,
                    p.cpu_pct
                );
            }
            h.push_str("</table>");
        }
        h.push_str("<h2>Bytes on the wire per server event</h2><table><tr><th>event</th><th>count</th><th>bytes</th><th>bytes/event</th></tr>");
        for (k, e) in &self.events {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                esc(k),
                e.count,
                e.bytes,
                e.bytes_per_event
            );
        }
        h.push_str("</table>");
        if !self.questions.is_empty() {
            h.push_str(
                "<h2>Questions</h2><table><tr><th>room</th><th>q</th><th>receipts</th><th>first after start ms</th>\
                 <th>last after start ms</th><th>spread ms</th><th>answers</th><th>reveals</th><th>reveal spread ms</th>\
                 <th>results</th></tr>",
            );
            for q in self.questions.iter().take(200) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td>\
                     <td>{}</td><td>{:.1}</td><td>{}</td></tr>",
                    q.room,
                    q.q,
                    q.receipts,
                    q.first_after_start_ms,
                    q.last_after_start_ms,
                    q.spread_ms,
                    q.answers,
                    q.reveal_receipts,
                    q.reveal_spread_ms,
                    q.results
                );
            }
            h.push_str("</table>");
        }
        let _ = write!(
            h,
            "<h2>Plan</h2><pre>{}</pre></body></html>",
            esc(&serde_json::to_string_pretty(&self.plan).unwrap_or_default())
        );
        h
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A percentile plot (HdrHistogram style: the x axis stretches the tail, 90 % / 99 % / 99.9 % equally
/// spaced) as an SVG string.
fn percentile_svg(m: Metric, h: &hdrhistogram::Histogram<u64>) -> anyhow::Result<String> {
    use plotters::prelude::*;
    // x = -log10(1 - q): 1 at 90 %, 2 at 99 %, 3 at 99.9 %.
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        pts.push((
            -(1.0 - q).log10(),
            h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
        ));
    }
    let xmax = pts.last().map_or(1.0, |p| p.0).clamp(1.0, 6.0).ceil();
    pts.push((xmax, h.max() as f64 / 1000.0));
    let ymax = (h.max() as f64 / 1000.0 * 1.1).max(0.01);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} ({})", m.name(), m.describe()),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_labels(xmax as usize + 1)
            .x_label_formatter(&|x| {
                let p = 100.0 * (1.0 - 10f64.powf(-*x));
                if p < 99.0 {
                    format!("{p:.0}%")
                } else {
                    format!("{}%", (p * 1e4).round() / 1e4)
                }
            })
            .y_desc("ms")
            .x_desc("percentile")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .draw_series(LineSeries::new(pts, &BLUE))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_plot_is_an_svg() {
        let mut h = crate::metrics::new_hist();
        for v in 1..10_000u64 {
            h.record(v).unwrap();
        }
        let svg = percentile_svg(Metric::AnswerAck, &h).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("answer_ack"),
            "{}",
            &svg[..100.min(svg.len())]
        );
    }
}
