//! Playback links: `PUBLIC_URL/media/<id>?exp=<unix>&sig=<hmac>`. They need
//! no header (an `<audio>` element can play them), expire, and cannot be
//! forged or moved to another recording without the secret.

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use audiobook_wire::{Record, TranscriptStatus};

use crate::db::RecordRow;

#[derive(Clone)]
pub struct Links {
    secret: Vec<u8>,
    public_url: String,
    ttl: std::time::Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

/// Why a link was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    Expired,
    BadSignature,
}

impl Links {
    pub fn new(secret: &[u8], public_url: &str, ttl: std::time::Duration) -> Links {
        Links { secret: secret.to_vec(), public_url: public_url.trim_end_matches('/').to_string(), ttl }
    }

    fn mac(&self, id: Uuid, exp: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("media:{id}:{exp}").as_bytes());
        mac
    }

    /// A fresh link to the audio of recording `id`.
    pub fn media_url(&self, id: Uuid) -> String {
        // Rounded up to the hour, so a list fetched twice gives the same URLs
        // (the browser's cache keeps working).
        let exp = (Utc::now().timestamp() + self.ttl.as_secs() as i64 + 3599) / 3600 * 3600;
        let sig = hex::encode(self.mac(id, exp).finalize().into_bytes());
        format!("{}/media/{id}?exp={exp}&sig={sig}", self.public_url)
    }

    pub fn verify(&self, id: Uuid, exp: i64, sig: &str) -> Result<(), LinkError> {
        let sig = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
        self.mac(id, exp).verify_slice(&sig).map_err(|_| LinkError::BadSignature)?;
        if exp < Utc::now().timestamp() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    /// A stored record as the API shows it, with a fresh link.
    pub fn record(&self, row: &RecordRow) -> Record {
        Record {
            id: row.id,
            user_id: row.user_id,
            name: row.name.clone(),
            link: self.media_url(row.id),
            mime_type: row.mime_type.clone(),
            size_bytes: row.size_bytes.max(0) as u64,
            duration_ms: row.duration_ms.max(0) as u64,
            status: row.status().to_wire(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            client_connected: match row.status() {
                crate::db::StoredStatus::Recording => Some(row.client_connected.unwrap_or(false)),
                _ => None,
            },
            transcript: match row.transcript_status.as_deref() {
                Some("queued") => TranscriptStatus::Queued,
                Some("running") => TranscriptStatus::Running,
                Some("ready") => TranscriptStatus::Ready,
                Some("failed") => TranscriptStatus::Failed,
                _ => TranscriptStatus::None,
            },
            transcript_progress: match row.transcript_status.as_deref() {
                Some("running") => row.transcript_progress.map(|p| (p.clamp(0.0, 1.0) * 100.0) as u8),
                _ => None,
            },
            transcript_match: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (Uuid, i64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let id = path.rsplit('/').next().unwrap().parse().unwrap();
        let mut exp = 0;
        let mut sig = String::new();
        for kv in query.split('&') {
            match kv.split_once('=').unwrap() {
                ("exp", v) => exp = v.parse().unwrap(),
                ("sig", v) => sig = v.to_string(),
                _ => {}
            }
        }
        (id, exp, sig)
    }

    #[test]
    fn a_link_verifies_and_a_tampered_one_does_not() {
        let links = Links::new(b"secret", "http://x/", std::time::Duration::from_secs(60));
        let id = Uuid::new_v4();
        let url = links.media_url(id);
        assert!(url.starts_with(&format!("http://x/media/{id}?exp=")));
        let (pid, exp, sig) = parts(&url);
        assert_eq!(links.verify(pid, exp, &sig), Ok(()));
        assert_eq!(links.verify(Uuid::new_v4(), exp, &sig), Err(LinkError::BadSignature));
        assert_eq!(links.verify(pid, exp + 3600, &sig), Err(LinkError::BadSignature));
        assert_eq!(links.verify(pid, exp, "zz"), Err(LinkError::BadSignature));
        let other = Links::new(b"other", "http://x", std::time::Duration::from_secs(60));
        assert_eq!(other.verify(pid, exp, &sig), Err(LinkError::BadSignature));
    }

    #[test]
    fn an_expired_link_is_refused() {
        let links = Links::new(b"secret", "http://x", std::time::Duration::from_secs(60));
        let id = Uuid::new_v4();
        let exp = Utc::now().timestamp() - 10;
        let sig = hex::encode(links.mac(id, exp).finalize().into_bytes());
        assert_eq!(links.verify(id, exp, &sig), Err(LinkError::Expired));
    }
}
