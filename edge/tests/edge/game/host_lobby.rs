//! `room:players` (docs/protocol.md §7.2): a host that came back on a new socket (a page reload) reads the
//! lobby's names page by page; players and strangers are refused with the request's `rid`. And the game
//! series of `/metrics` (players, hosts, rooms, answers, refusals by code) move with it.

use super::*;

async fn players_page(c: &mut Client, code: &str, offset: u32, count: u32) -> ServerEvent {
    c.request(ClientEvent::RoomPlayers(RoomPlayers {
        game_code: code.to_string(),
        offset,
        count,
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_host_reads_the_lobby_page_by_page_and_others_are_refused() {
    for codec in [Codec::Json, Codec::Msgpack] {
        let s = stack(Backend::Standalone).await;
        let addr = s.edge.local_addr();
        let mut host = Client::connect(addr, codec).await;
        let created = match host
            .request(ClientEvent::RoomCreate(RoomCreate {
                quiz_id: "edge-test".into(),
                host_name: None,
                settings: settings(),
            }))
            .await
        {
            ServerEvent::RoomCreated(c) => c,
            other => panic!("room:create → {other:?}"),
        };
        let code = created.game_code.clone();
        let mut players = Vec::new();
        for name in ["Ada", "Grace", "Linus"] {
            let mut p = Client::connect(addr, codec).await;
            join(&mut p, &code, name).await;
            players.push(p);
        }

        // The host reloads: a new socket, reconnect:attempt with the host token and no lastSeq.
        drop(host);
        let mut back = Client::connect(addr, codec).await;
        let rid = back
            .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
                game_code: code.clone(),
                player_id: "host".into(),
                session_token: created.host_token.clone(),
                last_seq: None,
            }))
            .await;
        let reply = back.reply(rid).await;
        assert!(
            !matches!(reply.event, ServerEvent::Error(_)),
            "host reconnect: {reply:?}"
        );

        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            match players_page(&mut back, &code, offset, 2).await {
                ServerEvent::PlayersList(page) => {
                    assert_eq!(page.total_count, 3, "{page:?}");
                    names.extend(page.players.into_iter().map(|p| p.name));
                    match page.next {
                        Some(n) => offset = n,
                        None => break,
                    }
                }
                other => panic!("room:players → {other:?}"),
            }
        }
        names.sort();
        assert_eq!(names, ["Ada", "Grace", "Linus"], "{codec:?}");

        // a player of the room: not_host; a socket without a session: unauthorized; both with the rid
        match players_page(&mut players[0], &code, 0, 10).await {
            ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::NotHost, "{e:?}"),
            other => panic!("a player's room:players → {other:?}"),
        }
        let mut stranger = Client::connect(addr, codec).await;
        match players_page(&mut stranger, &code, 0, 10).await {
            ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}"),
            other => panic!("a stranger's room:players → {other:?}"),
        }
        // a page past the bound is a bad payload
        match players_page(&mut back, &code, 0, 501).await {
            ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::BadPayload, "{e:?}"),
            other => panic!("room:players count 501 → {other:?}"),
        }

        // /metrics: the game series are there and count what just happened (process-wide: other
        // tests of this binary add to them, so lower bounds only)
        let m = common::http_get(addr, "/metrics").await;
        let at_least = |series: &str, n: f64| {
            let v = common::sample(&m, series).unwrap_or_else(|| panic!("{series} in {m}"));
            assert!(v >= n, "{series} = {v}, expected ≥ {n}");
        };
        at_least("ringside_edge_players", 3.0);
        at_least("ringside_edge_hosts", 1.0);
        at_least("ringside_edge_rooms", 1.0);
        at_least("ringside_edge_refusals_total{code=\"not_host\"}", 1.0);
        at_least("ringside_edge_refusals_total{code=\"unauthorized\"}", 1.0);
        at_least("ringside_edge_answers_total", 0.0);
        at_least("ringside_edge_sendq_bytes", 0.0);
    }
}
