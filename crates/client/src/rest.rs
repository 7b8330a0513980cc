use audiobook_wire::{ErrorBody, OnboardRequest, Onboarded, Record, User};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ClientError;

/// The REST API of one server, e.g. `Api::new("http://127.0.0.1:8080")`.
/// Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base_url: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS always builds");
        Api { base: base_url.trim_end_matches('/').to_owned(), http }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /onboard`.
    pub async fn onboard(&self, name: &str) -> Result<Onboarded, ClientError> {
        let resp = self.http.post(self.url("/onboard")).json(&OnboardRequest { name: name.to_owned() }).send().await?;
        decode(resp).await
    }

    /// `GET /profile/:id` with the user's bearer token.
    pub async fn profile(&self, id: Uuid, token: &str) -> Result<User, ClientError> {
        let resp = self.http.get(self.url(&format!("/profile/{id}"))).bearer_auth(token).send().await?;
        decode(resp).await
    }

    /// `GET /records/:id` with the user's bearer token.
    pub async fn records(&self, id: Uuid, token: &str) -> Result<Vec<Record>, ClientError> {
        let resp = self.http.get(self.url(&format!("/records/{id}"))).bearer_auth(token).send().await?;
        decode(resp).await
    }

    /// A raw GET of an absolute URL (a record's `link`), optionally with a
    /// `Range` header. Any status is returned, not turned into an error.
    pub async fn get_bytes(
        &self,
        url: &str,
        range: Option<&str>,
    ) -> Result<(u16, http::HeaderMap, Bytes), ClientError> {
        let mut req = self.http.get(url);
        if let Some(range) = range {
            req = req.header(http::header::RANGE, range);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok((status, headers, body))
    }

    /// Any request to a path of the API, for error-path tests: the body (if
    /// any) is sent as-is with `Content-Type: application/json`. Returns the
    /// status and the body as JSON (`Null` when empty, a JSON string holding
    /// the text when it is not JSON).
    pub async fn raw(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header(http::header::CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') { format!("{}{path}", self.base) } else { format!("{}/{path}", self.base) }
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        let error = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ClientError::Http { status: status.as_u16(), error });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Protocol(format!(
            "unexpected body for HTTP {status} ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })
}
