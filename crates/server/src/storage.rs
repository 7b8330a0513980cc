//! Where finalized audio lives: a local folder or an S3 bucket, both through
//! `object_store`, behind this one type. Nothing else in the server knows
//! which backend is in use.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::config::StorageConfig;

/// Upload part size: S3's minimum for all but the last part.
const PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// For the local folder: its path, so a finalized file can be linked
    /// into place instead of copied.
    local_dir: Option<std::path::PathBuf>,
    /// Set for S3: playback links are presigned GET URLs.
    signer: Option<Arc<AmazonS3>>,
    /// Object attributes (content type) are kept by S3 only; the local
    /// folder serves the type recorded in the database.
    keeps_attributes: bool,
}

/// What a ranged read returns.
pub struct ObjectRead {
    pub size: u64,
    pub range: Range<u64>,
    pub stream: BoxStream<'static, object_store::Result<Bytes>>,
}

impl Storage {
    pub fn from_config(config: &StorageConfig) -> object_store::Result<Storage> {
        match config {
            StorageConfig::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("cannot create STORAGE_DIR {}: {e}", dir.display()).into(),
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
                Ok(Storage {
                    store: Arc::new(store),
                    local_dir: Some(
                        dir.canonicalize().map_err(|e| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })?,
                    ),
                    signer: None,
                    keeps_attributes: false,
                })
            }
            StorageConfig::S3 { bucket, region, endpoint, force_path_style, allow_http } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http)
                    .with_virtual_hosted_style_request(!*force_path_style)
                    // A stop waits for the upload: fail fast when the bucket is
                    // unreachable (the take stays `pending` and is retried in
                    // the background) rather than hold the client for minutes.
                    .with_retry(object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(5),
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_allow_http(*allow_http)
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_timeout(Duration::from_secs(120)),
                    );
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let s3 = Arc::new(builder.build()?);
                Ok(Storage { store: s3.clone(), local_dir: None, signer: Some(s3), keeps_attributes: true })
            }
        }
    }

    pub fn is_s3(&self) -> bool {
        self.signer.is_some()
    }

    /// Uploads a file in parts (memory bounded by one part), confirming the
    /// whole object before returning. A local copy is flushed to the disk,
    /// with its folder entry, before this returns; a failed S3 upload is
    /// aborted, so no unfinished parts stay behind in the bucket.
    pub async fn put_file(&self, key: &str, file: &Path, content_type: &str) -> object_store::Result<u64> {
        if let Some(dir) = &self.local_dir
            && let Some(size) = link_into(dir, key, file).await
        {
            return Ok(size);
        }
        let mut attributes = Attributes::new();
        if self.keeps_attributes {
            attributes.insert(Attribute::ContentType, content_type.to_string().into());
        }
        let options = PutMultipartOptions { attributes, ..Default::default() };
        let upload = self.store.put_multipart_opts(&ObjectPath::from(key), options).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let total = match copy_into(&mut writer, file).await {
            Ok(total) => total,
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "cannot abort a failed multipart upload");
                }
                return Err(e);
            }
        };
        writer.finish().await?;
        if let Some(dir) = &self.local_dir {
            flush_local(dir, key).await.map_err(io_error)?;
        }
        Ok(total)
    }
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> object_store::Result<()> {
        self.store.put(&ObjectPath::from(key), bytes.into()).await.map(|_| ())
    }

    /// Reads an object, whole or a byte range of it.
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> object_store::Result<ObjectRead> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let result = self.store.get_opts(&ObjectPath::from(key), options).await?;
        let (size, range) = (result.meta.size, result.range.clone());
        let stream = match result.payload {
            // object_store reads local files 8 KiB per blocking-pool trip;
            // large reads cut the trips (and the server's CPU) by 30 times.
            object_store::GetResultPayload::File(file, _) => file_stream(file, range.clone()),
            object_store::GetResultPayload::Stream(stream) => stream,
        };
        Ok(ObjectRead { size, range, stream })
    }

    pub async fn size(&self, key: &str) -> object_store::Result<u64> {
        Ok(self.store.head(&ObjectPath::from(key)).await?.size)
    }

    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// A presigned GET URL for S3; `None` for the local folder (the server
    /// streams those itself). The bucket is told, in the signed URL, which
    /// type and disposition to answer with, whatever the object says.
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
        content_type: &str,
        disposition: &str,
    ) -> object_store::Result<Option<String>> {
        let Some(s3) = &self.signer else { return Ok(None) };
        let options = SignedUrlOptions::default()
            .with_query([("response-content-type", content_type), ("response-content-disposition", disposition)]);
        let url = s3.signed_url_opts(http::Method::GET, &ObjectPath::from(key), ttl, &options).await?;
        Ok(Some(url.to_string()))
    }
}

/// Streams `file` into a multipart upload; any error leaves the upload to abort.
async fn copy_into(writer: &mut WriteMultipart, file: &Path) -> object_store::Result<u64> {
    let mut input = tokio::fs::File::open(file).await.map_err(io_error)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Ok(total);
        }
        writer.wait_for_capacity(2).await?;
        writer.write(&buf[..n]);
        total += n as u64;
    }
}

/// Flushes a stored local object and its folder entry to the disk.
async fn flush_local(dir: &Path, key: &str) -> std::io::Result<()> {
    let dest = dir.join(key);
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dest)?.sync_all()?;
        match dest.parent() {
            Some(parent) => std::fs::File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Reads `range` of a local file in 256 KiB blocks (stored audio, and a
/// pending take's spool).
pub fn file_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, object_store::Result<Bytes>> {
    const BLOCK: u64 = 256 * 1024;
    futures::stream::try_unfold((file, range), |(mut file, range)| async move {
        if range.start >= range.end {
            return Ok(None);
        }
        let len = (range.end - range.start).min(BLOCK);
        let (file, bytes) = tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, Bytes)> {
            use std::io::{Read, Seek, SeekFrom};
            let mut buf = vec![0u8; len as usize];
            file.seek(SeekFrom::Start(range.start))?;
            file.read_exact(&mut buf)?;
            Ok((file, Bytes::from(buf)))
        })
        .await
        .map_err(|e| io_error(std::io::Error::other(e)))?
        .map_err(io_error)?;
        Ok(Some((bytes, (file, range.start + len..range.end))))
    })
    .boxed()
}

/// Hard-links `file` to `dir/key` (same file system: no copy, and the
/// spool's copy can be removed independently). `None` when linking is not
/// possible, and the caller copies instead.
async fn link_into(dir: &Path, key: &str, file: &Path) -> Option<u64> {
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return None;
    }
    let (dir, key, file) = (dir.to_path_buf(), key.to_string(), file.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let dest = dir.join(&key);
        std::fs::create_dir_all(dest.parent()?).ok()?;
        let staging = dest.with_extension(format!("linking-{}", uuid::Uuid::new_v4().simple()));
        std::fs::hard_link(&file, &staging).ok()?;
        if std::fs::rename(&staging, &dest).is_err() {
            let _ = std::fs::remove_file(&staging);
            return None;
        }
        // The linked file's data was flushed with the spool; its new name
        // must reach the disk too before the record says it is stored.
        std::fs::File::open(dest.parent()?).and_then(|d| d.sync_all()).ok()?;
        std::fs::metadata(&dest).ok().map(|m| m.len())
    })
    .await
    .ok()
    .flatten()
}

fn io_error(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic { store: "spool", source: Box::new(e) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The storage test-suite; runs against the local folder here and
    /// against a real S3-compatible server in `tests/storage_s3.rs`.
    pub async fn suite(storage: &Storage) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("take.webm");
        // Larger than one part, so the multipart path is exercised.
        let data: Vec<u8> = (0..(PART_BYTES + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let key = format!("suite/{}.webm", uuid::Uuid::new_v4());
        assert_eq!(storage.put_file(&key, &file, "audio/webm").await.unwrap(), data.len() as u64);
        assert_eq!(storage.size(&key).await.unwrap(), data.len() as u64);

        let whole = storage.get(&key, None).await.unwrap();
        assert_eq!(whole.size, data.len() as u64);
        let bytes: Vec<u8> = whole.stream.map(|b| b.unwrap().to_vec()).concat().await;
        assert_eq!(bytes, data);

        let part = storage.get(&key, Some(100..1100)).await.unwrap();
        assert_eq!(part.range, 100..1100);
        let bytes: Vec<u8> = part.stream.map(|b| b.unwrap().to_vec()).concat().await;
        assert_eq!(bytes, &data[100..1100]);

        storage.delete(&key).await.unwrap();
        assert!(matches!(storage.size(&key).await, Err(object_store::Error::NotFound { .. })));
        // Deleting twice is fine.
        storage.delete(&key).await.unwrap();
    }

    #[tokio::test]
    async fn s3_passes_the_storage_suite() {
        let Some(config) = crate::testing::s3_or_skip() else { return };
        let storage = Storage::from_config(&config).unwrap();
        assert!(storage.is_s3());
        suite(&storage).await;
        let url = storage
            .presigned_get("some/key.webm", Duration::from_secs(60), "audio/webm", "inline")
            .await
            .unwrap()
            .unwrap();
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("response-content-type=audio%2Fwebm"), "{url}");

        // An upload that fails half-way (its input cannot be read) is aborted:
        // no unfinished multipart upload is left in the bucket.
        let dir = tempfile::tempdir().unwrap();
        let key = format!("suite/{}.webm", uuid::Uuid::new_v4());
        assert!(storage.put_file(&key, dir.path(), "audio/webm").await.is_err(), "a folder is not a file");
        let crate::config::StorageConfig::S3 { endpoint: Some(endpoint), bucket, .. } = &config else { unreachable!() };
        let listing = reqwest::get(format!("{endpoint}/{bucket}?uploads")).await.unwrap().text().await.unwrap();
        assert!(listing.contains("ListMultipartUploadsResult"), "{listing}");
        assert!(!listing.contains(&key), "the failed upload was not aborted: {listing}");
    }

    #[tokio::test]
    async fn local_folder_passes_the_storage_suite() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_config(&StorageConfig::Local { dir: dir.path().join("public") }).unwrap();
        suite(&storage).await;
        assert!(storage.presigned_get("x", Duration::from_secs(1), "audio/webm", "inline").await.unwrap().is_none());
    }
}
