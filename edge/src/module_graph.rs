//! A test of the module graph of `edge/src`: it reads every `.rs` file, takes the modules each one names
//! (`crate::a::b`, `super::x`, `use child::…`, outside comments and `#[cfg(test)]` modules), and checks
//! the layering ARCHITECTURE.md describes:
//!
//! - the game layer sits above the transport: outside `game`, only `cli` (the command line, which
//!   flattens [`GameFlags`](crate::game::GameFlags)) names `crate::game`;
//! - `edge/src` has no import circle at all. The transport is layered: `shared` (process-wide state,
//!   read by probes as a value) → `worker` (per-thread clock and gauges) → `handle` (a socket as the
//!   game sees it) → `session` (the seam trait) and `registry` (the thread's sockets) → `conn` (the
//!   socket's task) → `server`; `http` reads `shared` only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `game/cmd/mod.rs` → `game::cmd`; `lib.rs`/`main.rs` → `` (the crate root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read edge/src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The module paths a line names, resolved against `module` (the file's module).
fn paths_in(line: &str, module: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = Vec::new();
    let mut push_from = |base: &str, rest: &str| {
        // `a::b::{c, d}` or `a::b::Item`: the longest known module prefix.
        let mut cur = base.to_string();
        let mut r = rest;
        let mut heads = Vec::new();
        loop {
            if let Some(group) = r.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let item = item.trim();
                    let n = ident_len(item);
                    heads.push(item[..n].to_string());
                }
                break;
            }
            let n = ident_len(r);
            if n == 0 {
                break;
            }
            let cand = if cur.is_empty() {
                r[..n].to_string()
            } else {
                format!("{cur}::{}", &r[..n])
            };
            if !modules.contains(&cand) {
                break;
            }
            cur = cand;
            r = &r[n..];
            match r.strip_prefix("::") {
                Some(next) => r = next,
                None => break,
            }
        }
        for h in heads {
            let cand = if cur.is_empty() {
                h.clone()
            } else {
                format!("{cur}::{h}")
            };
            if modules.contains(&cand) {
                out.push(cand);
            }
        }
        out.push(cur);
    };
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            push_from(base, rest);
        }
    }
    // `use child::…` / `pub use child::…`: a submodule of this module, named without a prefix.
    let t = line.trim_start().trim_start_matches("pub ");
    if let Some(rest) = t.strip_prefix("use ") {
        let n = ident_len(rest);
        let child = if module.is_empty() {
            rest[..n].to_string()
        } else {
            format!("{module}::{}", &rest[..n])
        };
        if n > 0 && modules.contains(&child) {
            push_from(&child, rest[n..].trim_start_matches("::"));
        }
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let modules: BTreeSet<String> = paths
        .iter()
        .map(|p| module_of(p.strip_prefix(&src).expect("under src")))
        .collect();
    let mut g = Graph::new();
    for p in &paths {
        let module = module_of(p.strip_prefix(&src).expect("under src"));
        if module.is_empty() || module == "module_graph" {
            continue; // the crate root declares every module; this test names them all
        }
        let text = std::fs::read_to_string(p).expect("read source");
        let deps = g.entry(module.clone()).or_default();
        for line in text.lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break; // test modules at the bottom of a file may name anything
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for d in paths_in(line, &module, &modules) {
                if !d.is_empty() && d != module {
                    deps.insert(d);
                }
            }
        }
    }
    g
}

/// The strongly connected components with more than one module, each sorted.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for d in g.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in g.keys() {
        let scc: Vec<String> = g
            .keys()
            .filter(|o| *o == m || (reaches[m].contains(*o) && reaches[o].contains(m)))
            .cloned()
            .collect();
        if scc.len() > 1 && !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

#[test]
fn the_game_layer_sits_above_the_transport_and_nothing_forms_a_circle() {
    let g = graph();
    assert!(
        g["game::socket"].contains("game::cmd"),
        "the parser sees `use super::cmd`: {g:?}"
    );
    assert!(
        g["conn"].contains("session"),
        "the parser sees `use crate::session`: {g:?}"
    );
    for (m, deps) in &g {
        let outside = !(m == "cli" || m == "game" || m.starts_with("game::"));
        if outside {
            let names_game: Vec<_> = deps.iter().filter(|d| d.starts_with("game")).collect();
            assert!(
                names_game.is_empty(),
                "{m} names {names_game:?}: only cli may"
            );
        }
    }
    let found = circles(&g);
    assert!(
        found.is_empty(),
        "import circles in edge/src: {found:?} (graph: {g:#?})"
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .fold(Graph::new(), |mut g, (from, to)| {
            g.entry(from.into()).or_default().insert(to.into());
            g.entry(to.into()).or_default();
            g
        });
    assert_eq!(
        circles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}
