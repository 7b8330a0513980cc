//! Decoding `append-recording` payloads with their binary attachment.
//!
//! socketioxide's `Data<T>` loses the attachment when the field is an
//! `Option` (its binary-aware deserializer is bypassed), so chunks are
//! decoded here: the JSON argument is parsed, the `data` placeholder
//! `{"_placeholder": true, "num": N}` is swapped for attachment N, and the
//! rest is deserialized into the wire type. The audio bytes are never copied.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use socketioxide::adapter::Adapter;
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::Socket;

use audiobook_wire::AppendChunk;

/// An `append-recording` argument, or why it could not be read.
pub struct ChunkPayload(pub Result<AppendChunk, String>);

impl<A: Adapter> FromMessageParts<A> for ChunkPayload {
    type Error = Infallible;

    fn from_message_parts(_: &Arc<Socket<A>>, v: &mut Value, _: &Option<i64>) -> Result<Self, Infallible> {
        Ok(ChunkPayload(match v {
            Value::Str(text, attachments) => {
                decode(text.as_str(), attachments.take().map(Vec::from).unwrap_or_default())
            }
            Value::Bytes(_) => Err("expected a JSON object with a binary `data` field".into()),
        }))
    }
}

/// `text` is the Socket.IO event array: `["append-recording", {...}, ...]`.
pub fn decode(text: &str, attachments: Vec<Bytes>) -> Result<AppendChunk, String> {
    let mut event: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut arg = event.as_array_mut().and_then(|a| a.get_mut(1)).map(serde_json::Value::take).unwrap_or_default();
    let object = arg.as_object_mut().ok_or("expected a JSON object")?;
    let data = match object.get_mut("data").map(serde_json::Value::take) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(p)) if p.get("_placeholder") == Some(&serde_json::Value::Bool(true)) => {
            let num = p.get("num").and_then(serde_json::Value::as_u64).ok_or("a binary placeholder without `num`")?;
            Some(attachments.get(num as usize).cloned().ok_or_else(|| format!("binary attachment {num} is missing"))?)
        }
        // Clients without binary support may send an array of byte values.
        Some(array @ serde_json::Value::Array(_)) => Some(
            serde_json::from_value::<Vec<u8>>(array)
                .map(Bytes::from)
                .map_err(|_| "`data` must be binary".to_string())?,
        ),
        Some(_) => return Err("`data` must be binary (an ArrayBuffer, Blob or Buffer)".into()),
    };
    // Peaks may come as a JSON array or, from some clients, as binary.
    let peaks = match object.get_mut("peaks").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(p)) if p.get("_placeholder") == Some(&serde_json::Value::Bool(true)) => p
            .get("num")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| attachments.get(n as usize))
            .map(|b| b.to_vec()),
        Some(other) => {
            object.insert("peaks".into(), other);
            None
        }
        None => None,
    };
    let mut chunk: AppendChunk = serde_json::from_value(arg).map_err(|e| e.to_string())?;
    chunk.data = data;
    if peaks.is_some() {
        chunk.peaks = peaks;
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_placeholder_for_the_attachment() {
        let text = r#"["append-recording",{"data":{"_placeholder":true,"num":0},"final":false,"seq":3}]"#;
        let chunk = decode(text, vec![Bytes::from_static(b"abc")]).unwrap();
        assert_eq!(chunk.data.as_deref(), Some(&b"abc"[..]));
        assert_eq!((chunk.seq, chunk.is_final), (Some(3), false));
        let text = r#"["append-recording",{"data":{"_placeholder":true,"num":0},"peaks":[1,255,3]}]"#;
        assert_eq!(decode(text, vec![Bytes::from_static(b"x")]).unwrap().peaks, Some(vec![1, 255, 3]));
        let text =
            r#"["append-recording",{"data":{"_placeholder":true,"num":0},"peaks":{"_placeholder":true,"num":1}}]"#;
        let chunk = decode(text, vec![Bytes::from_static(b"x"), Bytes::from_static(&[9, 8])]).unwrap();
        assert_eq!(chunk.peaks, Some(vec![9, 8]));
    }

    #[test]
    fn original_end_marker_and_errors() {
        let end = decode(r#"["append-recording",{"data":null,"final":true}]"#, vec![]).unwrap();
        assert!(end.data.is_none() && end.is_final);
        assert!(decode(r#"["append-recording","text"]"#, vec![]).is_err());
        assert!(decode(r#"["append-recording",{"data":5}]"#, vec![]).unwrap_err().contains("binary"));
        assert!(
            decode(r#"["append-recording",{"data":{"_placeholder":true,"num":1}}]"#, vec![])
                .unwrap_err()
                .contains("missing")
        );
        assert!(decode(r#"["append-recording",{"data":null,"seq":-1}]"#, vec![]).is_err());
        assert_eq!(
            decode(r#"["append-recording",{"data":[1,2]}]"#, vec![]).unwrap().data.as_deref(),
            Some(&[1u8, 2][..])
        );
    }
}
