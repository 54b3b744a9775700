//! Runs every example of docs/api.md, in order, against the real service (PostgreSQL, Redis, the API
//! over HTTP): the status must match, and every field the example shows must be in the response with
//! the value shown — values that differ per run (ids, tokens, times: [`VOLATILE`]) only by type.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const VOLATILE: &[&str] = &[
    "hostId",
    "roomId",
    "gameCode",
    "hostToken",
    "shareUrl",
    "createdAt",
    "updatedAt",
    "startedAt",
    "endedAt",
    "playerId",
    "ms",
    "apiKey",
];

struct Example {
    name: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    status: u16,
    response: Option<(String, String)>, // (fence language, text)
}

fn parse(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i]
            .strip_prefix("<!-- example: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            i += 1;
            continue;
        };
        i += 1;
        assert_eq!(
            lines[i], "```http",
            "example {name}: an ```http block follows its marker"
        );
        i += 1;
        let mut block = Vec::new();
        while lines[i] != "```" {
            block.push(lines[i]);
            i += 1;
        }
        i += 1;
        let (method, path) = block[0].split_once(' ').expect("METHOD PATH");
        let mut headers = Vec::new();
        let mut k = 1;
        while k < block.len() && !block[k].is_empty() {
            let (h, v) = block[k].split_once(": ").expect("Header: value");
            headers.push((h.to_string(), v.to_string()));
            k += 1;
        }
        let body = block.get(k + 1..).map(|b| b.join("\n")).unwrap_or_default();
        let status_line = lines[i]
            .strip_prefix("→ `")
            .unwrap_or_else(|| panic!("example {name}: a `→ `STATUS`` line follows the request"));
        let status: u16 = status_line[..3].parse().unwrap();
        i += 1;
        let mut response = None;
        if i < lines.len() && lines[i].starts_with("```") {
            let lang = lines[i].trim_start_matches('`').to_string();
            i += 1;
            let mut text = Vec::new();
            while lines[i] != "```" {
                text.push(lines[i]);
                i += 1;
            }
            i += 1;
            response = Some((lang, text.join("\n")));
        }
        out.push(Example {
            name: name.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body,
            status,
            response,
        });
    }
    out
}

/// Every field of `doc` is in `got` with the same value (or, for a volatile key, the same type).
fn check(doc: &Value, got: &Value, path: &str, volatile: bool) {
    match (doc, got) {
        (Value::Object(d), Value::Object(g)) => {
            for (k, v) in d {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {got}"));
                check(
                    v,
                    gv,
                    &format!("{path}.{k}"),
                    VOLATILE.contains(&k.as_str()),
                );
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            assert_eq!(d.len(), g.len(), "{path}: length ({got})");
            for (n, (dv, gv)) in d.iter().zip(g).enumerate() {
                check(dv, gv, &format!("{path}[{n}]"), volatile);
            }
        }
        _ if volatile => assert_eq!(
            std::mem::discriminant(doc),
            std::mem::discriminant(got),
            "{path}: type of {got} (documented {doc})"
        ),
        _ => assert_eq!(doc, got, "{path}"),
    }
}

fn check_csv(doc: &str, got: &str) {
    let d: Vec<&str> = doc.lines().collect();
    let g: Vec<&str> = got.trim_end_matches("\r\n").split("\r\n").collect();
    assert_eq!(d.len(), g.len(), "CSV rows:\n{got}");
    let header: Vec<&str> = d[0].split(',').collect();
    assert_eq!(d[0], g[0], "CSV header");
    for (dl, gl) in d.iter().zip(&g).skip(1) {
        for (n, (dc, gc)) in dl.split(',').zip(gl.split(',')).enumerate() {
            if header[n].ends_with("_ms") {
                assert_eq!(dc.is_empty(), gc.is_empty(), "{}: {gl}", header[n]);
                assert!(gc.is_empty() || gc.parse::<u64>().is_ok(), "{gl}");
            } else {
                assert_eq!(dc, gc, "column {} of {gl}", header[n]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_docs_api_md_holds_against_the_real_service() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let examples = parse(&doc);
    assert!(examples.len() >= 12, "examples found: {}", examples.len());
    let s = stack(Options::default()).await;
    let (_, key) = s.host("Ms. Rivera").await;
    let (_, other) = s.host("Mr. Chen").await;
    let mut vars: Vec<(String, String)> =
        vec![("$OTHER_KEY".into(), other), ("$KEY".into(), key.clone())];
    let subst = |text: &str, vars: &[(String, String)]| {
        let mut t = text.to_string();
        for (k, v) in vars {
            t = t.replace(k.as_str(), v);
        }
        t
    };
    let mut played = false;
    for ex in &examples {
        if ex.name == "list-games" && !played {
            // the game of the examples: Ada answers both questions right, "=cmd" the first, Grace wrong
            let code = vars
                .iter()
                .find(|(k, _)| k == "$GAME_CODE")
                .unwrap()
                .1
                .clone();
            let token = vars
                .iter()
                .find(|(k, _)| k == "$HOST_TOKEN")
                .unwrap()
                .1
                .clone();
            let room = vars
                .iter()
                .find(|(k, _)| k == "$ROOM_ID")
                .unwrap()
                .1
                .clone();
            let mut ids = Vec::new();
            for n in ["Ada", "=cmd", "Grace"] {
                ids.push(s.game.join(&code, n, 0, None).await.unwrap().player_id);
            }
            s.game.start(&code, &token).await.unwrap();
            fire_latest(&s.game, &code, "countdown_end").await;
            for (id, a) in ids.iter().zip([1, 1, 0]) {
                s.game.answer_submit(&code, id, 0, a).await.unwrap();
            }
            fire_latest(&s.game, &code, "next_question").await;
            s.game.answer_submit(&code, &ids[0], 1, 0).await.unwrap();
            s.game.skip(&code, &token, None).await.unwrap();
            fire_latest(&s.game, &code, "next_question").await;
            s.wait_stored(&key, &room, Duration::from_secs(30)).await;
            played = true;
        }
        let mut req = s.http.request(
            ex.method.parse().unwrap(),
            format!("{}{}", s.base, subst(&ex.path, &vars)),
        );
        for (h, v) in &ex.headers {
            req = req.header(h.as_str(), subst(v, &vars));
        }
        if !ex.body.is_empty() {
            req = req.body(subst(&ex.body, &vars));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, ex.status, "example {}: {text}", ex.name);
        match &ex.response {
            None => assert!(
                text.is_empty(),
                "example {}: no body documented, got {text}",
                ex.name
            ),
            Some((lang, doc_text)) if lang == "csv" => check_csv(&subst(doc_text, &vars), &text),
            Some((_, doc_text)) => {
                let doc_json: Value = serde_json::from_str(&subst(doc_text, &vars))
                    .unwrap_or_else(|e| panic!("example {}: documented JSON: {e}", ex.name));
                let got: Value = serde_json::from_str(&text).unwrap();
                check(&doc_json, &got, &ex.name, false);
                if ex.name == "create-room" {
                    for (var, field) in [
                        ("$ROOM_ID", "roomId"),
                        ("$GAME_CODE", "gameCode"),
                        ("$HOST_TOKEN", "hostToken"),
                    ] {
                        vars.insert(0, (var.into(), got[field].as_str().unwrap().to_string()));
                    }
                }
            }
        }
    }
    assert!(played, "the list-games example exists");
}
