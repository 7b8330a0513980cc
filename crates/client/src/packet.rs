//! Engine.IO v4 and Socket.IO v5 packets over a WebSocket, as pure functions.
//!
//! One WebSocket text frame carries one Engine.IO packet: a type digit
//! (`0` open, `1` close, `2` ping, `3` pong, `4` message, `5` upgrade,
//! `6` noop) and its data. A Socket.IO packet travels inside an Engine.IO
//! message: a type digit (`0` connect, `1` disconnect, `2` event, `3` ack,
//! `4` connect error, `5` binary event, `6` binary ack), for binary packets
//! the attachment count and `-`, an optional namespace (`/name,`), an
//! optional ack id, then JSON. Each binary attachment follows as its own
//! WebSocket binary frame with no prefix, and stands in the JSON as
//! `{"_placeholder": true, "num": i}`.
//!
//! This client speaks only the main namespace `/`.

use audiobook_wire::AppendChunk;
use bytes::Bytes;
use serde_json::Value;

use crate::ClientError;

/// An Engine.IO packet, borrowed from a WebSocket text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum EioPacket<'a> {
    /// `0{"sid": ..., "pingInterval": ..., ...}`: the handshake.
    Open(&'a str),
    Close,
    Ping,
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Decodes one Engine.IO packet from a WebSocket text frame.
pub fn decode_eio(text: &str) -> Result<EioPacket<'_>, ClientError> {
    let mut chars = text.char_indices();
    let Some((_, kind)) = chars.next() else {
        return Err(ClientError::Protocol("empty Engine.IO packet".into()));
    };
    let rest = &text[kind.len_utf8()..];
    Ok(match kind {
        '0' => EioPacket::Open(rest),
        '1' => EioPacket::Close,
        '2' => EioPacket::Ping,
        '3' => EioPacket::Pong,
        '4' => EioPacket::Message(rest),
        '5' => EioPacket::Upgrade,
        '6' => EioPacket::Noop,
        _ => {
            return Err(ClientError::Protocol(format!("unknown Engine.IO packet type in {}", preview(text))));
        }
    })
}

/// A Socket.IO packet of the main namespace, decoded from an Engine.IO
/// message. `args` is the JSON array of an event or ack (for events, the
/// event name is its first element).
#[derive(Debug, Clone, PartialEq)]
pub enum SioPacket {
    /// `0{"sid": ...}`: the namespace connect succeeded.
    Connect(Value),
    /// `1`: the server disconnected us from the namespace.
    Disconnect,
    Event {
        id: Option<u64>,
        args: Value,
    },
    Ack {
        id: u64,
        args: Value,
    },
    /// `4{"message": ...}`: the namespace connect was refused.
    ConnectError(Value),
    /// The JSON holds `attachments` placeholders; that many binary frames follow.
    BinaryEvent {
        attachments: usize,
        id: Option<u64>,
        args: Value,
    },
    BinaryAck {
        attachments: usize,
        id: u64,
        args: Value,
    },
}

/// Decodes a Socket.IO packet (the data of an Engine.IO message, without its
/// leading `4`).
pub fn decode_sio(msg: &str) -> Result<SioPacket, ClientError> {
    let bad = |what: &str| ClientError::Protocol(format!("{what} in Socket.IO packet {}", preview(msg)));
    let bytes = msg.as_bytes();
    let Some(&kind) = bytes.first() else {
        return Err(bad("empty packet"));
    };
    let mut pos = 1;

    let attachments = if kind == b'5' || kind == b'6' {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start || bytes.get(pos) != Some(&b'-') {
            return Err(bad("missing attachment count"));
        }
        let n: usize = msg[start..pos].parse().map_err(|_| bad("bad attachment count"))?;
        pos += 1;
        n
    } else {
        0
    };

    if bytes.get(pos) == Some(&b'/') {
        let end = msg[pos..].find(',').map(|i| pos + i).unwrap_or(msg.len());
        let nsp = &msg[pos..end];
        if nsp != "/" {
            return Err(bad(&format!("namespace {nsp:?} (only \"/\" is supported)")));
        }
        pos = (end + 1).min(msg.len());
    }

    let id_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let id: Option<u64> =
        if pos > id_start { Some(msg[id_start..pos].parse().map_err(|_| bad("bad ack id"))?) } else { None };

    let data = &msg[pos..];
    let json = |required: bool| -> Result<Value, ClientError> {
        if data.is_empty() {
            if required { Err(bad("missing JSON")) } else { Ok(Value::Null) }
        } else {
            serde_json::from_str(data).map_err(|e| bad(&format!("bad JSON ({e})")))
        }
    };
    let array = |v: Value| -> Result<Value, ClientError> {
        if v.is_array() { Ok(v) } else { Err(bad("expected a JSON array")) }
    };
    let need_id = || id.ok_or_else(|| bad("ack without id"));

    Ok(match kind {
        b'0' => SioPacket::Connect(json(false)?),
        b'1' => SioPacket::Disconnect,
        b'2' => SioPacket::Event { id, args: array(json(true)?)? },
        b'3' => SioPacket::Ack { id: need_id()?, args: array(json(true)?)? },
        b'4' => SioPacket::ConnectError(json(false)?),
        b'5' => SioPacket::BinaryEvent { attachments, id, args: array(json(true)?)? },
        b'6' => SioPacket::BinaryAck { attachments, id: need_id()?, args: array(json(true)?)? },
        _ => return Err(bad("unknown packet type")),
    })
}

/// The Engine.IO pong answering a server ping.
pub const PONG: &str = "3";
/// A Socket.IO disconnect from the main namespace.
pub const DISCONNECT: &str = "41";

/// `40{auth}`: connect to the main namespace with a handshake `auth` payload.
pub fn encode_connect(auth: &Value) -> String {
    if auth.is_null() { "40".to_owned() } else { format!("40{auth}") }
}

/// An event with one argument: `42[id]["event",payload]`, or for
/// `attachments > 0` the binary form `45<n>-[id]["event",payload]` (the
/// payload then holds that many placeholders).
pub fn encode_event(event: &str, payload: &Value, id: Option<u64>, attachments: usize) -> String {
    encode_event_args(event, std::slice::from_ref(payload), id, attachments)
}

/// Like [`encode_event`] with any number of arguments (none included).
pub fn encode_event_args(event: &str, args: &[Value], id: Option<u64>, attachments: usize) -> String {
    let mut out = String::with_capacity(64);
    out.push('4');
    if attachments > 0 {
        out.push('5');
        out.push_str(&attachments.to_string());
        out.push('-');
    } else {
        out.push('2');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    out.push('[');
    out.push_str(&Value::String(event.to_owned()).to_string());
    for arg in args {
        out.push(',');
        out.push_str(&arg.to_string());
    }
    out.push(']');
    out
}

/// `{"_placeholder": true, "num": num}`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

/// Splits an `append-recording` payload into its JSON (with `data` replaced
/// by placeholder 0 when present, `null` otherwise) and its binary attachments.
/// `data` is never serialized as a number array.
pub fn split_chunk(chunk: &AppendChunk) -> Result<(Value, Vec<Bytes>), ClientError> {
    let data = chunk.data.clone();
    let head = AppendChunk { data: None, peaks: chunk.peaks.clone(), mime_type: chunk.mime_type.clone(), ..*chunk };
    let mut json = serde_json::to_value(&head).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match data {
        Some(bytes) => {
            json["data"] = placeholder(0);
            Ok((json, vec![bytes]))
        }
        None => Ok((json, Vec::new())),
    }
}

/// Replaces every placeholder in `value` with the bytes of its attachment,
/// as a JSON array of numbers (which deserializes into `Vec<u8>` or `Bytes`).
pub fn fill_placeholders(value: &mut Value, attachments: &[Bytes]) -> Result<(), ClientError> {
    match value {
        Value::Object(map) => {
            if map.len() == 2 && map.get("_placeholder") == Some(&Value::Bool(true)) {
                let num = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| ClientError::Protocol("placeholder without a number".into()))?
                    as usize;
                let bytes = attachments
                    .get(num)
                    .ok_or_else(|| ClientError::Protocol(format!("placeholder {num} has no attachment")))?;
                *value = Value::Array(bytes.iter().map(|b| Value::from(*b)).collect());
            } else {
                for v in map.values_mut() {
                    fill_placeholders(v, attachments)?;
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                fill_placeholders(v, attachments)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn preview(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}...", &s[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn engine_io_packets_decode() {
        assert_eq!(decode_eio("2").unwrap(), EioPacket::Ping);
        assert_eq!(decode_eio("3").unwrap(), EioPacket::Pong);
        assert_eq!(decode_eio("1").unwrap(), EioPacket::Close);
        assert_eq!(decode_eio("6").unwrap(), EioPacket::Noop);
        assert_eq!(decode_eio("0{\"sid\":\"x\"}").unwrap(), EioPacket::Open("{\"sid\":\"x\"}"));
        assert_eq!(decode_eio("42[\"a\"]").unwrap(), EioPacket::Message("2[\"a\"]"));
        assert!(decode_eio("").is_err());
        assert!(decode_eio("9").is_err());
        assert!(decode_eio("é").is_err());
    }

    #[test]
    fn socket_io_packets_decode() {
        assert_eq!(decode_sio("0{\"sid\":\"abc\"}").unwrap(), SioPacket::Connect(json!({"sid": "abc"})));
        assert_eq!(decode_sio("0").unwrap(), SioPacket::Connect(Value::Null));
        assert_eq!(
            decode_sio("4{\"message\":\"bad token\"}").unwrap(),
            SioPacket::ConnectError(json!({"message": "bad token"}))
        );
        assert_eq!(decode_sio("1").unwrap(), SioPacket::Disconnect);
        assert_eq!(
            decode_sio("2[\"recording-saved\",{\"a\":1}]").unwrap(),
            SioPacket::Event { id: None, args: json!(["recording-saved", {"a": 1}]) }
        );
        assert_eq!(decode_sio("27[\"e\"]").unwrap(), SioPacket::Event { id: Some(7), args: json!(["e"]) });
        assert_eq!(decode_sio("312[{\"ok\":true}]").unwrap(), SioPacket::Ack { id: 12, args: json!([{"ok": true}]) });
        assert!(decode_sio("3[]").is_err(), "an ack needs an id");
        assert_eq!(
            decode_sio("61-4[{\"_placeholder\":true,\"num\":0}]").unwrap(),
            SioPacket::BinaryAck { attachments: 1, id: 4, args: json!([{"_placeholder": true, "num": 0}]) }
        );
        assert_eq!(
            decode_sio("52-[\"e\",1]").unwrap(),
            SioPacket::BinaryEvent { attachments: 2, id: None, args: json!(["e", 1]) }
        );
        // The main namespace may be spelled out.
        assert_eq!(decode_sio("3/,5[1]").unwrap(), SioPacket::Ack { id: 5, args: json!([1]) });
        assert!(decode_sio("2/admin,[\"e\"]").is_err());
        assert!(decode_sio("2{\"not\":\"array\"}").is_err());
        assert!(decode_sio("5-[\"e\"]").is_err());
        assert!(decode_sio("2[\"unterminated").is_err());
        assert!(decode_sio("9").is_err());
    }

    #[test]
    fn events_encode() {
        assert_eq!(encode_connect(&json!({"token": "t"})), "40{\"token\":\"t\"}");
        assert_eq!(encode_connect(&Value::Null), "40");
        assert_eq!(
            encode_event("stop-recording", &json!({"chunks": 2}), None, 0),
            "42[\"stop-recording\",{\"chunks\":2}]"
        );
        assert_eq!(encode_event("e", &json!(1), Some(17), 0), "4217[\"e\",1]");
        assert_eq!(
            encode_event("append-recording", &json!({"data": placeholder(0)}), Some(3), 1),
            "451-3[\"append-recording\",{\"data\":{\"_placeholder\":true,\"num\":0}}]"
        );
        assert_eq!(encode_event("e\"q", &json!(null), None, 0), "42[\"e\\\"q\",null]");
        assert_eq!(encode_event_args("e", &[], Some(0), 0), "420[\"e\"]");
    }

    #[test]
    fn chunk_data_becomes_an_attachment() {
        let id = Uuid::new_v4();
        let chunk = AppendChunk {
            data: Some(Bytes::from_static(&[0, 1, 255])),
            is_final: false,
            seq: Some(4),
            recording_id: Some(id),
            mime_type: None,
            peaks: None,
        };
        let (json, bins) = split_chunk(&chunk).unwrap();
        assert_eq!(
            json,
            json!({"data": {"_placeholder": true, "num": 0}, "final": false, "seq": 4, "recording_id": id})
        );
        assert_eq!(bins, vec![Bytes::from_static(&[0, 1, 255])]);
        let encoded = encode_event("append-recording", &json, Some(9), bins.len());
        assert!(encoded.starts_with("451-9[\"append-recording\",{"), "{encoded}");

        // The original end marker keeps `data: null` and has no attachment.
        let end = AppendChunk { is_final: true, ..Default::default() };
        let (json, bins) = split_chunk(&end).unwrap();
        assert_eq!(json, json!({"data": null, "final": true}));
        assert!(bins.is_empty());
    }

    #[test]
    fn placeholders_fill_with_their_attachment() {
        let mut v = json!([{"x": {"_placeholder": true, "num": 1}}, {"_placeholder": true, "num": 0}]);
        fill_placeholders(&mut v, &[Bytes::from_static(b"a"), Bytes::from_static(b"bc")]).unwrap();
        assert_eq!(v, json!([{"x": [98, 99]}, [97]]));
        let mut missing = json!({"_placeholder": true, "num": 2});
        assert!(fill_placeholders(&mut missing, &[]).is_err());
    }
}
