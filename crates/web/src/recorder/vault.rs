//! The vault: every chunk of a take is kept on this device (IndexedDB)
//! before it is sent, and stays there until the server has saved the take,
//! so a reload, a crash, a lost connection or a server that lost its copy
//! loses nothing that was recorded.
//!
//! Two object stores in the database `audiobook-vault`:
//! - `takes`: one [`TakeMeta`] per take (JSON text), keyed by the take's
//!   local id (a take recorded offline has no server id yet);
//! - `chunks`: `{data, peaks}` as ArrayBuffers (WebKit refuses Blobs in some
//!   cases), keyed by `[local id, seq]`.
//!
//! A chunk and its take's updated metadata are written in one transaction,
//! so the count in the metadata never names a chunk that is not there.
//!
//! The metadata is pure Rust (tested natively); the IndexedDB part runs in
//! the browser only.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest MIME type and name kept (anything longer is not ours).
const MAX_TEXT: usize = 256;
/// More chunks than a take of a year at one a second: a corrupt entry.
const MAX_CHUNKS: u64 = 40_000_000;
/// Partial server copies one take may replace.
const MAX_REPLACES: usize = 16;

/// What the vault knows of one take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeMeta {
    /// The take's id on this device.
    pub local_id: Uuid,
    /// Whose take it is: it is only ever sent with this user's session.
    pub user_id: Uuid,
    /// The server's id, once `start-recording` answered.
    #[serde(default)]
    pub recording_id: Option<Uuid>,
    pub mime_type: String,
    /// The name asked of the server (none: the server numbers it).
    #[serde(default)]
    pub name: Option<String>,
    /// `Date.now()` when the take started and when it was last written.
    pub created_at_ms: f64,
    pub updated_at_ms: f64,
    /// Chunks kept here: seq `0..chunks` (the next seq).
    #[serde(default)]
    pub chunks: u64,
    /// Their bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Media time recorded up to the last chunk (pauses excluded).
    #[serde(default)]
    pub duration_ms: u64,
    /// The recorder stopped: no chunk follows.
    #[serde(default)]
    pub finished: bool,
    /// Partial copies on the server that this take replaces once saved.
    #[serde(default)]
    pub replaces: Vec<Uuid>,
    /// Where the person paused (`[pause, resume]`, ms since the start).
    #[serde(default)]
    pub paused_ms: Vec<[u64; 2]>,
}

impl TakeMeta {
    pub fn new(user_id: Uuid, local_id: Uuid, mime_type: &str, now_ms: f64) -> TakeMeta {
        TakeMeta {
            local_id,
            user_id,
            recording_id: None,
            mime_type: mime_type.to_string(),
            name: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            chunks: 0,
            bytes: 0,
            duration_ms: 0,
            finished: false,
            replaces: Vec::new(),
            paused_ms: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("take metadata serializes")
    }

    /// Reads an entry of the vault; anything malformed or out of bounds
    /// (another version's format, a damaged entry) is `None` and left alone.
    pub fn from_json(text: &str) -> Option<TakeMeta> {
        let meta: TakeMeta = serde_json::from_str(text).ok()?;
        let sane = meta.mime_type.len() <= MAX_TEXT
            && meta.name.as_ref().is_none_or(|n| n.len() <= MAX_TEXT)
            && meta.chunks <= MAX_CHUNKS
            && meta.replaces.len() <= MAX_REPLACES
            && meta.paused_ms.len() <= audiobook_wire::MAX_PAUSES
            && meta.created_at_ms.is_finite()
            && meta.updated_at_ms.is_finite();
        sane.then_some(meta)
    }
}

#[cfg(target_arch = "wasm32")]
pub use browser::{Vault, VaultError};

#[cfg(target_arch = "wasm32")]
mod browser {
    use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
    use uuid::Uuid;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStore, IdbTransaction, IdbTransactionMode};

    use super::super::idb::{self, IdbError};
    use super::TakeMeta;

    const DB_NAME: &str = "audiobook-vault";
    const DB_VERSION: u32 = 1;
    const TAKES: &str = "takes";
    const CHUNKS: &str = "chunks";

    /// Why the vault could not keep or read something.
    #[derive(Debug, Clone, PartialEq)]
    pub enum VaultError {
        /// This device's storage for the site is full.
        Full,
        /// IndexedDB is missing, blocked or failed, in the browser's words.
        Unavailable(String),
    }

    impl From<IdbError> for VaultError {
        fn from(e: IdbError) -> Self {
            match e {
                IdbError::QuotaExceeded => VaultError::Full,
                IdbError::Failed(why) => VaultError::Unavailable(why),
            }
        }
    }

    impl std::fmt::Display for VaultError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                VaultError::Full => f.write_str("this device's storage for AudioBook is full"),
                VaultError::Unavailable(why) => write!(f, "this browser's storage is not available ({why})"),
            }
        }
    }

    /// A chunk read back from the vault.
    pub struct StoredChunk {
        pub data: Vec<u8>,
        pub peaks: Vec<u8>,
    }

    /// The open vault.
    pub struct Vault {
        db: IdbDatabase,
    }

    fn create_stores(db: &IdbDatabase) {
        let names = db.object_store_names();
        for store in [TAKES, CHUNKS] {
            if !names.contains(store) {
                let _ = db.create_object_store(store);
            }
        }
    }

    fn chunk_key(local_id: Uuid, seq: u64) -> JsValue {
        Array::of2(&local_id.to_string().into(), &(seq as f64).into()).into()
    }

    impl Vault {
        pub async fn open() -> Result<Vault, VaultError> {
            Ok(Vault { db: idb::open(DB_NAME, DB_VERSION, create_stores).await? })
        }

        fn transaction(&self, mode: IdbTransactionMode) -> Result<IdbTransaction, VaultError> {
            let stores = Array::of2(&TAKES.into(), &CHUNKS.into());
            Ok(self
                .db
                .transaction_with_str_sequence_and_mode(&stores, mode)
                .map_err(|e| IdbError::thrown(e, "begin"))?)
        }

        /// A write refused as it was made. Firefox turns the writes of a
        /// database that hit the quota into "cleanup" transactions, which
        /// may only delete: the vault is full.
        fn refused(tx: &IdbTransaction, e: JsValue) -> VaultError {
            let _ = tx.abort();
            if tx.mode().ok() == Some(IdbTransactionMode::Cleanup) {
                return VaultError::Full;
            }
            IdbError::thrown(e, "put").into()
        }

        fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, VaultError> {
            Ok(tx.object_store(name).map_err(|e| IdbError::thrown(e, "store"))?)
        }

        /// Keeps `take`'s metadata.
        pub async fn save(&self, take: &TakeMeta) -> Result<(), VaultError> {
            let tx = self.transaction(IdbTransactionMode::Readwrite)?;
            if let Err(e) =
                Self::store(&tx, TAKES)?.put_with_key(&take.to_json().into(), &take.local_id.to_string().into())
            {
                return Err(Self::refused(&tx, e));
            }
            Ok(idb::committed(&tx).await?)
        }

        /// Keeps chunk `seq` of `take` together with `take`'s metadata (which
        /// already counts it), and returns once both are committed.
        pub async fn add_chunk(&self, take: &TakeMeta, seq: u64, data: &[u8], peaks: &[u8]) -> Result<(), VaultError> {
            let value = Object::new();
            let set = |k: &str, bytes: &[u8]| {
                let copy = Uint8Array::from(bytes).buffer();
                Reflect::set(&value, &k.into(), &copy).expect("set a field of a plain object");
            };
            set("data", data);
            set("peaks", peaks);
            let tx = self.transaction(IdbTransactionMode::Readwrite)?;
            let (chunks, takes) = (Self::store(&tx, CHUNKS)?, Self::store(&tx, TAKES)?);
            let put = chunks
                .put_with_key(&value, &chunk_key(take.local_id, seq))
                .and_then(|_| takes.put_with_key(&take.to_json().into(), &take.local_id.to_string().into()));
            if let Err(e) = put {
                return Err(Self::refused(&tx, e));
            }
            Ok(idb::committed(&tx).await?)
        }

        /// Chunk `seq` of take `local_id`, if the vault has it.
        pub async fn chunk(&self, local_id: Uuid, seq: u64) -> Result<Option<StoredChunk>, VaultError> {
            let tx = self.transaction(IdbTransactionMode::Readonly)?;
            let request =
                Self::store(&tx, CHUNKS)?.get(&chunk_key(local_id, seq)).map_err(|e| IdbError::thrown(e, "get"))?;
            let value = idb::request(&request).await?;
            if value.is_undefined() || value.is_null() {
                return Ok(None);
            }
            let bytes = |k: &str| -> Option<Vec<u8>> {
                let buffer = Reflect::get(&value, &k.into()).ok()?.dyn_into::<ArrayBuffer>().ok()?;
                Some(Uint8Array::new(&buffer).to_vec())
            };
            // An entry of another shape is not a chunk of ours.
            Ok(bytes("data").map(|data| StoredChunk { data, peaks: bytes("peaks").unwrap_or_default() }))
        }

        /// Every take in the vault whose metadata reads well.
        pub async fn takes(&self) -> Result<Vec<TakeMeta>, VaultError> {
            let tx = self.transaction(IdbTransactionMode::Readonly)?;
            let request = Self::store(&tx, TAKES)?.get_all().map_err(|e| IdbError::thrown(e, "list"))?;
            let all = idb::request(&request).await?;
            let all: Array = all.dyn_into().unwrap_or_default();
            Ok(all.iter().filter_map(|v| v.as_string()).filter_map(|t| TakeMeta::from_json(&t)).collect())
        }

        /// Forgets take `local_id` and all its chunks (it is saved on the server).
        pub async fn remove(&self, local_id: Uuid) -> Result<(), VaultError> {
            let tx = self.transaction(IdbTransactionMode::Readwrite)?;
            let id: JsValue = local_id.to_string().into();
            let range = IdbKeyRange::bound(&chunk_key(local_id, 0), &Array::of2(&id, &f64::INFINITY.into()))
                .map_err(|e| IdbError::thrown(e, "range"))?;
            Self::store(&tx, CHUNKS)?.delete(&range).map_err(|e| IdbError::thrown(e, "delete"))?;
            Self::store(&tx, TAKES)?.delete(&id).map_err(|e| IdbError::thrown(e, "delete"))?;
            Ok(idb::committed(&tx).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take() -> TakeMeta {
        let mut t =
            TakeMeta::new(Uuid::from_u128(1), Uuid::from_u128(2), "audio/webm;codecs=opus", 1_700_000_000_000.0);
        t.chunks = 12;
        t.bytes = 190_000;
        t.recording_id = Some(Uuid::from_u128(3));
        t
    }

    #[test]
    fn metadata_round_trips() {
        let t = take();
        assert_eq!(TakeMeta::from_json(&t.to_json()), Some(t));
    }

    #[test]
    fn an_older_entry_without_the_newer_fields_reads() {
        let text = r#"{"local_id":"00000000-0000-0000-0000-000000000002","user_id":"00000000-0000-0000-0000-000000000001",
            "mime_type":"audio/webm","created_at_ms":1,"updated_at_ms":2}"#;
        let t = TakeMeta::from_json(text).expect("reads");
        assert_eq!((t.chunks, t.finished, t.recording_id), (0, false, None));
    }

    #[test]
    fn malformed_or_absurd_entries_are_left_alone() {
        for bad in ["", "null", "[]", "{\"local_id\":5}", "{", "\"text\""] {
            assert_eq!(TakeMeta::from_json(bad), None, "{bad}");
        }
        let mut t = take();
        t.mime_type = "a".repeat(10_000);
        assert_eq!(TakeMeta::from_json(&t.to_json()), None);
        let mut t = take();
        t.chunks = u64::MAX;
        assert_eq!(TakeMeta::from_json(&t.to_json()), None);
        let mut t = take();
        t.replaces = vec![Uuid::nil(); 1000];
        assert_eq!(TakeMeta::from_json(&t.to_json()), None);
        // Non-finite times cannot even be written as JSON numbers.
        let text = take().to_json().replace("1700000000000.0", "1e999");
        assert_eq!(TakeMeta::from_json(&text), None);
    }
}
