//! MP4 for tests: builders of WebKit-like fragments, and an independent reader built on the
//! `mp4-atom` crate (not on this crate's box code), so a bug there cannot hide itself.

use mp4_atom::{Decode, Moof, Moov};

pub fn mp4box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat()
}

pub fn full(version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    [&((u32::from(version) << 24) | flags).to_be_bytes()[..], body].concat()
}

/// One `ftyp` and the `moov` of the real WebKitGTK 5 s take (zero durations, AAC 44.1 kHz,
/// track 1, trex defaults 0).
pub fn webkit_init() -> Vec<u8> {
    let data = super::data("webkitgtk-aac-5s.m4a");
    data[32..817].to_vec()
}

/// A fragment as WebKit writes it: tfhd flags 0, tfdt version 0, trun flags 0x701 (data
/// offset; per-sample duration, size, flags), then the mdat.
pub fn fragment(sequence: u32, tfdt: u32, samples: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let moof_len = 8 + 16 + 8 + 16 + 16 + (8 + 12 + 12 * samples.len());
    let mut trun = (samples.len() as u32).to_be_bytes().to_vec();
    trun.extend_from_slice(&((moof_len + 8) as u32).to_be_bytes());
    for (duration, bytes) in samples {
        trun.extend_from_slice(&duration.to_be_bytes());
        trun.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        trun.extend_from_slice(&0x0200_0000u32.to_be_bytes());
    }
    let traf = [
        mp4box(b"tfhd", &full(0, 0, &1u32.to_be_bytes())),
        mp4box(b"tfdt", &full(0, 0, &tfdt.to_be_bytes())),
        mp4box(b"trun", &full(0, 0x701, &trun)),
    ]
    .concat();
    let moof =
        mp4box(b"moof", &[mp4box(b"mfhd", &full(0, 0, &sequence.to_be_bytes())), mp4box(b"traf", &traf)].concat());
    assert_eq!(moof.len(), moof_len);
    let data: Vec<u8> = samples.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    [moof, mp4box(b"mdat", &data)].concat()
}

/// Top-level boxes: (type, start, end).
pub fn top_boxes(buf: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= buf.len() {
        let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&buf[pos + 4..pos + 8]).into_owned();
        let size = match size {
            0 => buf.len() - pos,
            1 => u64::from_be_bytes(buf[pos + 8..pos + 16].try_into().unwrap()) as usize,
            s => s,
        };
        let end = (pos + size).min(buf.len());
        out.push((kind, pos, end));
        pos = end;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time from the fragment's tfdt plus the earlier samples of the fragment.
    pub time: u64,
    pub duration: u32,
    pub data: Vec<u8>,
    /// Where the sample's bytes end, and where its moof ends and its mdat starts.
    pub end: usize,
    pub moof_end: usize,
    pub mdat_start: usize,
}

/// What an MP4 holds, as mp4-atom decodes it.
#[derive(Debug, Default)]
pub struct Facts {
    pub ftyps: usize,
    pub moov: Option<Moov>,
    pub sidx: Option<mp4_atom::Sidx>,
    /// (offset, sequence number) of every moof whose data lies in the mdat after it.
    pub moofs: Vec<(usize, u32)>,
    /// moofs whose data does not lie in the mdat after them (WebKit's stale copies).
    pub stale_moofs: usize,
    pub samples: Vec<Sample>,
    /// Top-level box types in order.
    pub order: Vec<String>,
}

impl Facts {
    pub fn mdhd_timescale(&self) -> u32 {
        self.moov.as_ref().unwrap().trak[0].mdia.mdhd.timescale
    }

    pub fn samples_ms(&self) -> u64 {
        let ticks: u64 = self.samples.iter().map(|s| u64::from(s.duration)).sum();
        (ticks * 1000 + u64::from(self.mdhd_timescale()) / 2) / u64::from(self.mdhd_timescale())
    }
}

/// Decodes every top-level box with mp4-atom; a moof's samples are taken from the mdat that
/// follows it (a moof whose data points elsewhere is counted as stale and skipped).
pub fn read(buf: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut pending: Vec<(usize, usize, Moof)> = Vec::new();
    for (kind, start, end) in top_boxes(buf) {
        facts.order.push(kind.clone());
        let whole = &buf[start..end];
        match kind.as_str() {
            "ftyp" => facts.ftyps += 1,
            "moov" => facts.moov = Some(Moov::decode(&mut &whole[..]).expect("mp4-atom decodes the moov")),
            "sidx" => facts.sidx = Some(mp4_atom::Sidx::decode(&mut &whole[..]).expect("mp4-atom decodes the sidx")),
            "moof" => pending.push((start, end, Moof::decode(&mut &whole[..]).expect("mp4-atom decodes the moof"))),
            "mdat" => {
                let header = if u32::from_be_bytes(whole[..4].try_into().unwrap()) == 1 { 16 } else { 8 };
                let payload = start + header..end;
                for (moof_start, moof_end, moof) in pending.drain(..) {
                    let traf = &moof.traf[0];
                    let trex = facts.moov.as_ref().and_then(|m| m.mvex.as_ref()).and_then(|m| m.trex.first());
                    let base = traf.tfhd.base_data_offset.map_or(moof_start, |b| b as usize);
                    let mut pos = base;
                    let mut samples = Vec::new();
                    let mut inside = true;
                    for trun in &traf.trun {
                        if let Some(off) = trun.data_offset {
                            pos = (base as i64 + i64::from(off)) as usize;
                        }
                        for e in trun.samples.iter() {
                            let size = e.size.or(traf.tfhd.default_sample_size).or(trex.map(|t| t.default_sample_size));
                            let duration = e
                                .duration
                                .or(traf.tfhd.default_sample_duration)
                                .or(trex.map(|t| t.default_sample_duration));
                            let (size, duration) = (size.unwrap() as usize, duration.unwrap());
                            inside &= pos >= payload.start && pos + size <= payload.end;
                            samples.push((duration, pos..pos + size));
                            pos += size;
                        }
                    }
                    if !inside {
                        facts.stale_moofs += 1;
                        continue;
                    }
                    facts.moofs.push((moof_start, moof.mfhd.sequence_number));
                    let mut time = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
                    for (duration, range) in samples {
                        let end = range.end;
                        facts.samples.push(Sample {
                            time,
                            duration,
                            data: buf[range].to_vec(),
                            end,
                            moof_end,
                            mdat_start: start,
                        });
                        time += u64::from(duration);
                    }
                }
            }
            _ => {}
        }
    }
    facts
}

/// The header durations of a moov: (mvhd, tkhd, mdhd, mehd).
pub fn durations(moov: &Moov) -> (u64, u64, u64, Option<u64>) {
    let trak = &moov.trak[0];
    (
        moov.mvhd.duration,
        trak.tkhd.duration,
        trak.mdia.mdhd.duration,
        moov.mvex.as_ref().and_then(|m| m.mehd.as_ref()).map(|m| m.fragment_duration),
    )
}

/// `buf` with the body of the box at `path` (types from the top level down, first match at
/// each level) replaced by `body`, every parent's size adjusted.
pub fn replace_body(buf: &[u8], path: &[&[u8; 4]], body: &[u8]) -> Vec<u8> {
    fn find(buf: &[u8], range: std::ops::Range<usize>, kind: &[u8; 4]) -> (usize, usize) {
        let mut pos = range.start;
        while pos + 8 <= range.end {
            let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if &buf[pos + 4..pos + 8] == kind {
                return (pos, pos + size);
            }
            pos += size;
        }
        panic!("no {} box", String::from_utf8_lossy(kind));
    }
    let mut range = 0..buf.len();
    let mut chain = Vec::new();
    for kind in path {
        let (start, end) = find(buf, range.clone(), kind);
        chain.push(start);
        range = start + 8..end;
    }
    let delta = body.len() as i64 - (range.end - range.start) as i64;
    let mut out = [&buf[..range.start], body, &buf[range.end..]].concat();
    for start in chain {
        let size = u32::from_be_bytes(out[start..start + 4].try_into().unwrap()) as i64 + delta;
        out[start..start + 4].copy_from_slice(&(size as u32).to_be_bytes());
    }
    out
}
