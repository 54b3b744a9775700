//! One close-code table: `ringside_protocol::CloseCode`. docs/protocol.md §4 must list exactly its codes,
//! names and reconnect advice, and `web/close-codes.js` (what the pages read) must be generated from it.
//! `RINGSIDE_BLESS=1 cargo test -p ringside-protocol --test protocol close_codes` rewrites the JS file.

use ringside_protocol::{CloseCode, Reconnect};

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// The rows of the table under `### WebSocket close codes`: (code, name, reconnect?).
fn doc_rows() -> Vec<(u16, String, String)> {
    let doc = std::fs::read_to_string(repo_file("docs/protocol.md")).expect("docs/protocol.md");
    let section = doc
        .split_once("### WebSocket close codes")
        .expect("docs/protocol.md has a close-code section")
        .1;
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let code = cells[0]
                .parse()
                .unwrap_or_else(|_| panic!("bad code cell in {l}"));
            (
                code,
                cells[1].to_string(),
                cells[2].trim_matches('*').to_string(),
            )
        })
        .collect()
}

/// `web/close-codes.js` as the table generates it.
fn js_module() -> String {
    let mut s = String::from(
        "// WebSocket close codes and what a client does after each. GENERATED from protocol/src/error.rs\n\
         // (`CloseCode`) by protocol/tests/protocol/close_codes.rs, which fails when this file differs: do not edit.\n\
         // reconnect: 'never' (final), 'now' (at once, any edge, last seq), 'backoff' (after a backoff).\n\
         export const CLOSE_CODES = {\n",
    );
    for c in CloseCode::ALL {
        s.push_str(&format!(
            "  {}: {{ name: '{}', reconnect: '{}' }},\n",
            c.code(),
            c.name(),
            c.reconnect().as_js()
        ));
    }
    s.push_str(&format!(
        "}};\n\n\
         // Any other code (1005 no code, 1006 dropped without a close frame, a proxy's 1001/1011/1013…).\n\
         export function reconnectAdvice(code) {{\n  \
         const c = CLOSE_CODES[code];\n  \
         return c ? c.reconnect : '{}';\n}}\n",
        Reconnect::after(None).as_js()
    ));
    s
}

#[test]
fn the_docs_close_code_table_is_the_protocol_table() {
    let want: Vec<(u16, String, String)> = CloseCode::ALL
        .iter()
        .map(|c| {
            (
                c.code(),
                c.name().to_string(),
                c.reconnect().as_doc().to_string(),
            )
        })
        .collect();
    assert_eq!(doc_rows(), want, "docs/protocol.md §4 close codes");
}

#[test]
fn the_web_pages_read_the_protocol_table() {
    let path = repo_file("web/close-codes.js");
    let want = js_module();
    if std::env::var_os("RINGSIDE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "web/close-codes.js differs from CloseCode (rerun with RINGSIDE_BLESS=1):\n{want}"
    );
}
