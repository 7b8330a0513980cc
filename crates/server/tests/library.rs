//! The library routes over real HTTP, against both database backends:
//! rename, delete, share (and the public share page), download names, and
//! paging and search of `GET /records/:id`. Every route is owner only.

mod common;

use std::path::PathBuf;

use audiobook_client::wire::{AppendAck, AppendChunk, Record, StartRecording, StopAck, StopRecording};
use audiobook_client::{Api, Socket};
use audiobook_server::db::{Db, FinishedRecording, NewRecording, StoredStatus};
use bytes::Bytes;
use common::{Backend, TestApp, spawn_app};
use http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../media/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A real 3 s take through the socket (sequenced protocol), named `name`.
async fn record_take(app: &TestApp, token: &str, name: &str) -> Record {
    let data = fixture("mediarecorder-opus-3s.webm");
    common::record_take(&app.url, token, Some(name), &data, data.len()).await
}

async fn append(socket: &Socket, id: Uuid, seq: u64, data: Bytes) {
    let ack = socket
        .append(&AppendChunk {
            data: Some(data),
            seq: Some(seq),
            recording_id: Some(id),
            mime_type: Some("audio/webm;codecs=opus".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(ack, AppendAck::Ok(_)), "{ack:?}");
}

/// A saved record written straight to the store (fast: for lists).
async fn insert_saved(app: &TestApp, user_id: Uuid, name: &str) -> Uuid {
    let db = &app.state.db;
    let id = Uuid::new_v4();
    db.insert_recording(&NewRecording {
        id,
        user_id,
        name: name.into(),
        mime_type: "audio/webm".into(),
        owner_instance: Uuid::new_v4(),
    })
    .await
    .unwrap();
    let key = format!("recordings/{user_id}/{id}.webm");
    app.state.storage.put_bytes(&key, Bytes::from_static(b"not really audio")).await.unwrap();
    let finished = FinishedRecording {
        status: StoredStatus::Ready,
        outcome: None,
        storage_key: key,
        mime_type: "audio/webm".into(),
        size_bytes: 16,
        duration_ms: 1000,
        peaks: None,
    };
    db.finish_recording(id, &finished).await.unwrap().unwrap();
    id
}

/// Where the local storage keeps a record's audio.
fn stored_file(app: &TestApp, record: &Record) -> PathBuf {
    app.dir.path().join("public").join(format!("recordings/{}/{}.webm", record.user_id, record.id))
}

fn json_body(name: impl Into<Value>) -> Option<Vec<u8>> {
    Some(json!({ "name": name.into() }).to_string().into_bytes())
}

fn assert_error(status: u16, body: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert!(body["error"].as_str().is_some_and(|m| m.len() > 5), "{what}: {body}");
}

async fn rename_checks_the_name_and_the_owner(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let ann = api.onboard("Ann").await.unwrap();
    let bob = api.onboard("Bob").await.unwrap();
    let id = insert_saved(&app, ann.user.id, "Recording 1").await;
    let before = api.records(ann.user.id, &ann.token).await.unwrap().remove(0);
    let path = format!("/recordings/{id}");

    let (status, body) =
        api.raw(Method::PATCH, &path, Some(&ann.token), json_body("  Kitchen interview  ")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let renamed: Record = serde_json::from_value(body).unwrap();
    assert_eq!(renamed.name, "Kitchen interview");
    assert_eq!((renamed.id, renamed.user_id, renamed.created_at), (id, ann.user.id, before.created_at));
    assert!(renamed.updated_at > before.updated_at, "updated_at is bumped");
    assert!(renamed.link.starts_with(&format!("{}/media/{id}?", app.url)));
    assert_eq!(api.records(ann.user.id, &ann.token).await.unwrap(), vec![renamed]);

    // 1 and 50 characters, multi-byte ones counted as one.
    for name in ["x".to_string(), "ñ".repeat(50), "\u{1F600}".repeat(50), "x'); DROP TABLE records;--".into()] {
        let (status, body) = api.raw(Method::PATCH, &path, Some(&ann.token), json_body(name.as_str())).await.unwrap();
        assert_eq!((status, body["name"].as_str()), (200, Some(name.as_str())), "{name}");
    }
    for (body, expected) in [
        (json!({"name": ""}), 422),
        (json!({"name": "   "}), 422),
        (json!({"name": "ñ".repeat(51)}), 422),
        (json!({"name": "a".repeat(51)}), 422),
        (json!({"name": "a\u{0007}b"}), 422),
        (json!({"name": 42}), 422),
        (json!({"name": ["a"]}), 422),
        (json!({"name": null}), 422),
        (json!({}), 422),
        (json!(["name"]), 400),
    ] {
        let (status, err) =
            api.raw(Method::PATCH, &path, Some(&ann.token), Some(body.to_string().into_bytes())).await.unwrap();
        assert_error(status, &err, expected, &body.to_string());
    }
    let (status, err) = api.raw(Method::PATCH, &path, Some(&ann.token), Some(b"{not json".to_vec())).await.unwrap();
    assert_error(status, &err, 400, "not JSON");
    assert!(err["error"].as_str().unwrap().contains("JSON"));
    let (status, err) = api.raw(Method::PATCH, &path, Some(&ann.token), None).await.unwrap();
    assert_error(status, &err, 400, "no body");
    assert_eq!(api.records(ann.user.id, &ann.token).await.unwrap()[0].name, "x'); DROP TABLE records;--");

    let cases: Vec<(String, Option<&str>, u16)> = vec![
        ("/recordings/not-a-uuid".into(), Some(&ann.token), 400),
        ("/recordings/not-a-uuid".into(), None, 400),
        (path.clone(), None, 401),
        (path.clone(), Some("wrong-token"), 401),
        (path.clone(), Some(&bob.token), 403),
        (format!("/recordings/{}", Uuid::new_v4()), Some(&ann.token), 404),
    ];
    for (p, token, expected) in cases {
        let (status, err) = api.raw(Method::PATCH, &p, token, json_body("Stolen")).await.unwrap();
        assert_error(status, &err, expected, &format!("PATCH {p} with {token:?}"));
    }
    assert_ne!(api.records(ann.user.id, &ann.token).await.unwrap()[0].name, "Stolen");
    app.stop().await;
}
both_backends!(rename, rename_checks_the_name_and_the_owner);

async fn delete_removes_the_row_the_link_and_the_audio(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let ann = api.onboard("Ann").await.unwrap();
    let bob = api.onboard("Bob").await.unwrap();
    let keep = record_take(&app, &ann.token, "Keep me").await;
    let take = record_take(&app, &ann.token, "Delete me").await;
    let file = stored_file(&app, &take);
    assert!(file.exists(), "{}", file.display());
    assert_eq!(api.get_bytes(&take.link, None).await.unwrap().0, 200);
    let path = format!("/recordings/{}", take.id);

    for (p, token, expected) in [
        ("/recordings/nope".to_string(), Some(ann.token.as_str()), 400),
        (path.clone(), None, 401),
        (path.clone(), Some(bob.token.as_str()), 403),
        (format!("/recordings/{}", Uuid::new_v4()), Some(ann.token.as_str()), 404),
    ] {
        let (status, err) = api.raw(Method::DELETE, &p, token, None).await.unwrap();
        assert_error(status, &err, expected, &format!("DELETE {p} with {token:?}"));
    }
    assert!(file.exists(), "refused deletes keep the audio");

    let (status, body) = api.raw(Method::DELETE, &path, Some(&ann.token), None).await.unwrap();
    assert_eq!((status, body), (204, Value::Null));
    let left = api.records(ann.user.id, &ann.token).await.unwrap();
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), vec![keep.id]);
    let (status, _, body) = api.get_bytes(&take.link, None).await.unwrap();
    assert_eq!(status, 404, "the old link stops working");
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    assert!(!file.exists(), "the stored object is removed");
    assert!(stored_file(&app, &keep).exists());
    let (status, err) = api.raw(Method::DELETE, &path, Some(&ann.token), None).await.unwrap();
    assert_error(status, &err, 404, "deleted twice");
    let (status, err) = api.raw(Method::PATCH, &path, Some(&ann.token), json_body("Back")).await.unwrap();
    assert_error(status, &err, 404, "rename a deleted recording");

    // A live take cannot be deleted (nor shared) until it is saved.
    let socket = Socket::connect(&app.url, &ann.token).await.unwrap();
    let live = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    append(&socket, live, 0, Bytes::from(fixture("mediarecorder-opus-3s.webm"))).await;
    let live_path = format!("/recordings/{live}");
    let (status, err) = api.raw(Method::DELETE, &live_path, Some(&ann.token), None).await.unwrap();
    assert_error(status, &err, 409, "delete a live take");
    let (status, err) = api.raw(Method::POST, &format!("{live_path}/share"), Some(&ann.token), None).await.unwrap();
    assert_error(status, &err, 409, "share a live take");
    let StopAck::Ok(_) =
        socket.stop(&StopRecording { recording_id: Some(live), chunks: Some(1), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    socket.disconnect().await;
    let (status, _) = api.raw(Method::DELETE, &live_path, Some(&ann.token), None).await.unwrap();
    assert_eq!(status, 204, "deletable once saved");
    app.stop().await;
}
both_backends!(delete, delete_removes_the_row_the_link_and_the_audio);

async fn share_links_play_publicly_until_revoked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let http = reqwest::Client::new();
    let owner = api.onboard("Ownerperson").await.unwrap();
    let bob = api.onboard("Bob").await.unwrap();
    let take = record_take(&app, &owner.token, "Birds <at> dawn & dusk").await;
    let other = record_take(&app, &owner.token, "Private diary").await;
    let share_path = format!("/recordings/{}/share", take.id);

    // Owner only, like every recording route.
    for method in [Method::POST, Method::DELETE] {
        for (p, token, expected) in [
            ("/recordings/nope/share".to_string(), Some(owner.token.as_str()), 400),
            (share_path.clone(), None, 401),
            (share_path.clone(), Some(bob.token.as_str()), 403),
            (format!("/recordings/{}/share", Uuid::new_v4()), Some(owner.token.as_str()), 404),
        ] {
            let (status, err) = api.raw(method.clone(), &p, token, None).await.unwrap();
            assert_error(status, &err, expected, &format!("{method} {p} with {token:?}"));
        }
    }

    let (status, body) = api.raw(Method::POST, &share_path, Some(&owner.token), None).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let url = body["url"].as_str().unwrap().to_string();
    let token = url.strip_prefix(&format!("{}/s/", app.url)).unwrap_or_else(|| panic!("{url}")).to_string();
    assert!(token.len() >= 22 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    let (status, again) = api.raw(Method::POST, &share_path, Some(&owner.token), None).await.unwrap();
    assert_eq!((status, again["url"].as_str()), (200, Some(url.as_str())), "sharing twice gives the same URL");

    // The page: the recording, and nothing of its owner.
    let page = http.get(&url).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Birds &lt;at&gt; dawn &amp; dusk"), "{html}");
    assert!(html.contains("0:03"), "the duration: {html}");
    assert!(html.contains(&format!("<audio controls preload=\"metadata\" src=\"/s/{token}/audio\">")), "{html}");
    for secret in [
        owner.user.name.as_str(),
        &owner.user.id.to_string(),
        &owner.token,
        &take.id.to_string(),
        "Private diary",
        &other.id.to_string(),
    ] {
        assert!(!html.contains(secret), "the page shows {secret}: {html}");
    }
    for external in ["<script", "<link", "src=\"http", "href=\"http", "url("] {
        assert!(!html.contains(external), "self-contained, but has {external}: {html}");
    }

    let info: Value = http.get(format!("{url}/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        info,
        json!({"name": take.name, "duration_ms": 3000, "created_at": take.created_at, "mime_type": take.mime_type})
    );

    // The audio, with Range, through the share URL (no token, no header).
    let whole = api.get_bytes(&take.link, None).await.unwrap().2;
    let (status, _, body) = api.get_bytes(&format!("{url}/audio"), None).await.unwrap();
    assert_eq!((status, body.len()), (200, whole.len()));
    assert_eq!(body, whole);
    let (status, headers, body) = api.get_bytes(&format!("{url}/audio"), Some("bytes=100-1099")).await.unwrap();
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 100-1099/{}", whole.len()).as_str());
    assert_eq!(&body[..], &whole[100..1100]);
    let (status, headers, _) = api.get_bytes(&format!("{url}/audio?download=1"), None).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));

    // Revoked: page, info and audio answer 404; revoking twice is fine.
    let (status, body) = api.raw(Method::DELETE, &share_path, Some(&owner.token), None).await.unwrap();
    assert_eq!((status, body), (204, Value::Null));
    let page = http.get(&url).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("revoked"));
    for suffix in ["", "/info", "/audio"] {
        let (status, _, body) = api.get_bytes(&format!("{url}{suffix}"), Some("bytes=0-9")).await.unwrap();
        assert_eq!(status, 404, "{url}{suffix}");
        assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string(), "{url}{suffix}");
    }
    let (status, _) = api.raw(Method::DELETE, &share_path, Some(&owner.token), None).await.unwrap();
    assert_eq!(status, 204);
    for bogus in ["x", "not-a-real-token-but-plausible", "../../etc/passwd", "%00"] {
        let (status, _, _) = api.get_bytes(&format!("{}/s/{bogus}", app.url), None).await.unwrap();
        assert_eq!(status, 404, "{bogus}");
    }

    // Sharing again gives a new URL; the revoked one stays dead.
    let (status, body) = api.raw(Method::POST, &share_path, Some(&owner.token), None).await.unwrap();
    assert_eq!(status, 201);
    let second = body["url"].as_str().unwrap().to_string();
    assert_ne!(second, url);
    assert_eq!(api.get_bytes(&url, None).await.unwrap().0, 404);
    assert_eq!(api.get_bytes(&second, None).await.unwrap().0, 200);
    // Deleting the recording ends its share too.
    let (status, _) =
        api.raw(Method::DELETE, &format!("/recordings/{}", take.id), Some(&owner.token), None).await.unwrap();
    assert_eq!(status, 204);
    assert_eq!(api.get_bytes(&second, None).await.unwrap().0, 404);
    assert_eq!(api.get_bytes(&format!("{second}/audio"), None).await.unwrap().0, 404);
    app.stop().await;
}
both_backends!(share, share_links_play_publicly_until_revoked);

async fn download_is_named_after_the_recording(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let ann = api.onboard("Ann").await.unwrap();
    let take = record_take(&app, &ann.token, "Recording 1").await;
    let (status, _) = api
        .raw(Method::PATCH, &format!("/recordings/{}", take.id), Some(&ann.token), json_body("Team standup"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let record = api.records(ann.user.id, &ann.token).await.unwrap().remove(0);

    let (status, headers, body) = api.get_bytes(&format!("{}&download=1", record.link), None).await.unwrap();
    assert_eq!(status, 200);
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"Team standup.webm\""), "{disposition}");
    assert_eq!(body.len() as u64, record.size_bytes);
    assert_eq!(body, api.get_bytes(&record.link, None).await.unwrap().2, "the same bytes as playback");
    let (_, headers, _) = api.get_bytes(&record.link, None).await.unwrap();
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("inline;"));
    app.stop().await;
}
both_backends!(download, download_is_named_after_the_recording);

/// `GET /records/:id` with a query: the records, status and next cursor.
async fn page(app: &TestApp, user: Uuid, token: &str, query: &str) -> (u16, Value, Option<String>) {
    let response = reqwest::Client::new()
        .get(format!("{}/records/{user}?{query}", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cursor = response.headers().get("x-next-cursor").map(|v| v.to_str().unwrap().to_string());
    (status, response.json().await.unwrap(), cursor)
}

fn names(body: &Value) -> Vec<String> {
    body.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

async fn records_page_by_cursor_and_search_by_name(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let ann = api.onboard("Ann").await.unwrap();
    let bob = api.onboard("Bob").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..22 {
        ids.push(insert_saved(&app, ann.user.id, &format!("Take {i:02}")).await);
    }
    for name in ["Weekly MEETING", "meeting notes", "50%_off \\ sale"] {
        ids.push(insert_saved(&app, ann.user.id, name).await);
    }
    insert_saved(&app, bob.user.id, "Bob's meeting").await;
    // Some records made in the same microsecond: the id breaks the tie.
    let same = audiobook_server::db::now();
    let sql = "UPDATE records SET created_at = $1 WHERE id = $2 OR id = $3 OR id = $4 OR id = $5";
    match &app.state.db {
        Db::Sqlite(p) => sqlx_exec_sqlite(&p.write, sql, same, &ids[5..9]).await,
        Db::Postgres(p) => sqlx_exec_pg(p, sql, same, &ids[5..9]).await,
    }

    let all = api.records(ann.user.id, &ann.token).await.unwrap();
    assert_eq!(all.len(), 25, "without a limit: everything, as original clients expect");
    let (status, body, cursor) = page(&app, ann.user.id, &ann.token, "").await;
    assert_eq!((status, body.as_array().unwrap().len(), cursor), (200, 25, None));

    // Pages of 10: 10 + 10 + 5, in the same order as the whole list.
    let mut paged = Vec::new();
    let mut query = "limit=10".to_string();
    let mut sizes = Vec::new();
    loop {
        let (status, body, cursor) = page(&app, ann.user.id, &ann.token, &query).await;
        assert_eq!(status, 200, "{body}");
        let records: Vec<Record> = serde_json::from_value(body).unwrap();
        sizes.push(records.len());
        paged.extend(records);
        match cursor {
            Some(c) => query = format!("limit=10&before={c}"),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(paged.iter().map(|r| r.id).collect::<Vec<_>>(), all.iter().map(|r| r.id).collect::<Vec<_>>());
    // Exactly one page: no cursor.
    let (_, body, cursor) = page(&app, ann.user.id, &ann.token, "limit=25").await;
    assert_eq!((body.as_array().unwrap().len(), cursor), (25, None));
    let (_, body, cursor) = page(&app, ann.user.id, &ann.token, "limit=100").await;
    assert_eq!((body.as_array().unwrap().len(), cursor), (25, None));

    // Search: case-insensitive substring; LIKE wildcards are plain characters.
    let (_, body, _) = page(&app, ann.user.id, &ann.token, "q=MeEtInG").await;
    assert_eq!(names(&body), vec!["meeting notes", "Weekly MEETING"]);
    let (_, body, cursor) = page(&app, ann.user.id, &ann.token, "q=meeting&limit=1").await;
    assert_eq!(names(&body), vec!["meeting notes"]);
    let (_, body, cursor) =
        page(&app, ann.user.id, &ann.token, &format!("q=meeting&limit=1&before={}", cursor.unwrap())).await;
    assert_eq!((names(&body), cursor), (vec!["Weekly MEETING".to_string()], None));
    for (q, expected) in
        [("%25", vec!["50%_off \\ sale"]), ("_", vec!["50%_off \\ sale"]), ("%5C", vec!["50%_off \\ sale"])]
    {
        let (_, body, _) = page(&app, ann.user.id, &ann.token, &format!("q={q}")).await;
        assert_eq!(names(&body), expected, "q={q}");
    }
    let (_, body, _) = page(&app, ann.user.id, &ann.token, "q=take%200").await;
    assert_eq!(names(&body).len(), 10, "Take 00..09");
    let (_, body, _) = page(&app, ann.user.id, &ann.token, "q=nothing%20like%20this").await;
    assert_eq!(body, json!([]));
    let (_, body, _) = page(&app, ann.user.id, &ann.token, "q=%20%20").await;
    assert_eq!(body.as_array().unwrap().len(), 25, "a blank search is no search");

    for bad in ["limit=0", "limit=101", "limit=ten", "limit=-1", "before=garbage", "limit=5&before=bm9wZQ"] {
        let (status, body, _) = page(&app, ann.user.id, &ann.token, bad).await;
        assert_error(status, &body, 400, bad);
    }
    let (status, body, _) = page(&app, ann.user.id, &bob.token, "limit=5").await;
    assert_error(status, &body, 403, "another user's list");
    app.stop().await;
}
both_backends!(paging_and_search, records_page_by_cursor_and_search_by_name);

async fn sqlx_exec_sqlite(p: &sqlx::SqlitePool, sql: &str, at: chrono::DateTime<chrono::Utc>, ids: &[Uuid]) {
    let mut q = sqlx::query(sql).bind(at);
    for id in ids {
        q = q.bind(*id);
    }
    assert_eq!(q.execute(p).await.unwrap().rows_affected(), ids.len() as u64);
}

async fn sqlx_exec_pg(p: &sqlx::PgPool, sql: &str, at: chrono::DateTime<chrono::Utc>, ids: &[Uuid]) {
    let mut q = sqlx::query(sql).bind(at);
    for id in ids {
        q = q.bind(*id);
    }
    assert_eq!(q.execute(p).await.unwrap().rows_affected(), ids.len() as u64);
}
