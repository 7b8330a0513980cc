//! The REST API over real HTTP, against both database backends: every route's
//! happy path and every error the CONTRACT lists.

mod common;

use audiobook_client::{Api, ClientError};
use common::{Backend, spawn_app};
use http::Method;
use serde_json::{Value, json};

async fn onboard_validates_names(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);

    // 1 and 20 characters (multi-byte: characters, not bytes) are accepted; trimmed.
    let one = api.onboard("A").await.unwrap();
    assert_eq!(one.user.name, "A");
    assert_eq!(one.token.len(), 43, "256-bit token");
    let twenty = "ñ".repeat(20);
    assert_eq!(api.onboard(&twenty).await.unwrap().user.name, twenty);
    assert_eq!(api.onboard("  Ada  ").await.unwrap().user.name, "Ada");
    let emoji = "\u{1F600}".repeat(20);
    assert_eq!(api.onboard(&emoji).await.unwrap().user.name, emoji);
    // SQL-looking names are stored verbatim.
    let sql = "x'); DROP TABLE u;--";
    let u = api.onboard(sql).await.unwrap();
    assert_eq!(api.profile(u.user.id, &u.token).await.unwrap().name, sql);

    for (body, status) in [
        (json!({"name": ""}), 422),
        (json!({"name": "   "}), 422),
        (json!({"name": "ñ".repeat(21)}), 422),
        (json!({"name": 42}), 422),
        (json!({"name": ["a"]}), 422),
        (json!({"name": null}), 422),
        (json!({}), 422),
        (json!(["name"]), 400),
    ] {
        let (got, err) = api.raw(Method::POST, "/onboard", None, Some(body.to_string().into_bytes())).await.unwrap();
        assert_eq!(got, status, "{body}");
        assert!(err["error"].as_str().is_some_and(|m| !m.is_empty()), "{body} → {err}");
    }
    let (got, err) = api.raw(Method::POST, "/onboard", None, Some(b"{not json".to_vec())).await.unwrap();
    assert_eq!(got, 400);
    assert!(err["error"].as_str().unwrap().contains("JSON"));
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(200_000));
    let (got, err) = api.raw(Method::POST, "/onboard", None, Some(huge.into_bytes())).await.unwrap();
    assert_eq!(got, 413);
    assert!(err["error"].is_string());
    app.stop().await;
}
both_backends!(onboard, onboard_validates_names);

async fn profile_and_records_are_owner_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let ann = api.onboard("Ann").await.unwrap();
    let bob = api.onboard("Bob").await.unwrap();

    let me = api.profile(ann.user.id, &ann.token).await.unwrap();
    assert_eq!(me, ann.user);
    let (_, body) = api.raw(Method::GET, &format!("/profile/{}", ann.user.id), Some(&ann.token), None).await.unwrap();
    assert!(body.get("token").is_none(), "the profile never shows the token");
    assert_eq!(api.records(ann.user.id, &ann.token).await.unwrap(), vec![]);

    for route in ["profile", "records"] {
        let ann_path = format!("/{route}/{}", ann.user.id);
        let cases: Vec<(String, Option<&str>, u16)> = vec![
            (format!("/{route}/not-a-uuid"), Some(ann.token.as_str()), 400),
            (format!("/{route}/not-a-uuid"), None, 400),
            (ann_path.clone(), None, 401),
            (ann_path.clone(), Some("wrong-token"), 401),
            (ann_path.clone(), Some(""), 401),
            (ann_path.clone(), Some(bob.token.as_str()), 403),
            (format!("/{route}/{}", uuid::Uuid::new_v4()), Some(ann.token.as_str()), 404),
        ];
        for (path, token, status) in cases {
            let (got, body) = api.raw(Method::GET, &path, token, None).await.unwrap();
            assert_eq!(got, status, "{path} with {token:?}: {body}");
            assert!(body["error"].as_str().is_some_and(|m| m.len() > 5), "{path}: {body}");
        }
    }
    match api.profile(ann.user.id, &bob.token).await {
        Err(ClientError::Http { status: 403, .. }) => {}
        other => panic!("expected 403, got {other:?}"),
    }
    app.stop().await;
}
both_backends!(owner_only, profile_and_records_are_owner_only);

async fn health_unknown_routes_and_cors(backend: Backend) {
    let Some(app) = spawn_app_with_origin(backend).await else { return };
    let api = Api::new(&app.url);
    let (status, body) = api.raw(Method::GET, "/health", None, None).await.unwrap();
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    let (status, body) = api.raw(Method::GET, "/no/such/route", None, None).await.unwrap();
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/no/such/route"));
    let (status, body) = api.raw(Method::DELETE, "/onboard", None, None).await.unwrap();
    assert_eq!(status, 405);
    assert!(body["error"].is_string());

    // CORS: the allowed origin gets the header, another origin does not.
    let client = reqwest_client();
    let allowed = client
        .request(Method::OPTIONS, format!("{}/onboard", app.url))
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.headers().get("access-control-allow-origin").unwrap(), "http://app.example");
    let denied = client
        .request(Method::OPTIONS, format!("{}/onboard", app.url))
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());

    // The health check says so when the database is gone.
    app.state.db.close().await;
    let (status, body): (u16, Value) = api.raw(Method::GET, "/health", None, None).await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    app.stop().await;
}
both_backends!(health_and_cors, health_unknown_routes_and_cors);

async fn spawn_app_with_origin(backend: Backend) -> Option<common::TestApp> {
    common::spawn_app_with(backend, |c| c.allowed_origins = vec!["http://app.example".into()]).await
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The web app on the same origin: client routes answer index.html (also
/// `/onboard`, which the API answers for POST), assets go gzipped to
/// browsers that accept it.
#[tokio::test]
async fn serves_the_web_app_with_client_routes_and_gzip() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.html"), "<!doctype html><title>AudioBook</title>").unwrap();
    std::fs::write(dist.path().join("web_bg.wasm"), b"\0asm plain").unwrap();
    std::fs::write(dist.path().join("web_bg.wasm.gz"), b"gzipped bytes").unwrap();
    let path = dist.path().to_path_buf();
    let Some(app) = common::spawn_app_with(Backend::Sqlite, move |c| c.web_dist = Some(path)).await else { return };
    let client = reqwest_client();
    for route in ["/", "/onboard", "/recorder", "/records"] {
        let r = client.get(format!("{}{route}", app.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{route}");
        assert!(r.text().await.unwrap().contains("<title>AudioBook</title>"), "{route}");
    }
    let gz = client.get(format!("{}/web_bg.wasm", app.url)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let plain = client.get(format!("{}/web_bg.wasm", app.url)).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(&plain.bytes().await.unwrap()[..], b"\0asm plain");
    // The API still answers on the same paths.
    let (status, _) =
        Api::new(&app.url).raw(Method::POST, "/onboard", None, Some(br#"{"name":"Web"}"#.to_vec())).await.unwrap();
    assert_eq!(status, 201);
    app.stop().await;
}
