//! One streaming walk over a fragmented MP4: the `ftyp` and `moov` to keep, and for every
//! fragment whether it is kept, which of its samples are kept, and what it becomes in the
//! output. Used by the fixer's first pass and by [`crate::mp4_duration_ms`].
//!
//! What MediaRecorder (WebKit) writes and what this walk does about it:
//! - `ftyp` twice: every `ftyp` after the first is dropped.
//! - the last fragment's `moof` twice, byte-identical, so the first copy's data offset points
//!   into the second copy instead of the `mdat`: a `moof` whose sample data does not lie inside
//!   the `mdat` that follows is a stale copy when a later `moof` before that `mdat` has the same
//!   sequence number, and is dropped; otherwise the file is refused.
//! - `tfdt` starting at 1: the output timeline is rebuilt from the sample durations, from 0
//!   and contiguous, also after a cut.
//! - an interrupted take: a box cut off by the end of the input is dropped, and so are the
//!   samples of a cut-off `mdat` whose bytes are not all there.
//!
//! Linear in the input and bounded in memory: one [`Fragment`] (40 bytes) per kept fragment,
//! at most [`MAX_FRAGMENTS`]; at most [`MAX_PENDING_MOOFS`] `moof`s (each at most
//! [`MAX_MOOF_BYTES`]) waiting for their `mdat`; samples are walked in place in the `moof`
//! buffer. Every sample has at least one byte and fragments may not share sample bytes, so the
//! number of samples is bounded by the input's size, and so is the output's.

use std::io::{Read, Seek};
use std::ops::Range;

use crate::MediaError;
use crate::mp4::{self, BoxHeader, Moof, Moov, Trex};
use crate::source::{ReadError, SeekSource, Source};

/// Kept fragments beyond which the walk gives up: WebKit writes one a second, so this is
/// days of audio (20 MB of [`Fragment`]s at most).
pub const MAX_FRAGMENTS: usize = 500_000;
/// `moof`s that may wait for one `mdat` (the real one and its stale copies).
pub const MAX_PENDING_MOOFS: usize = 4;
/// Spans a cut may have (each splits a run in two at most, so this bounds the work per run).
pub const MAX_CUTS: usize = 10_000;

/// A kept fragment: where its `moof` is in the input and what it becomes in the output.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub moof_start: u64,
    pub moof_len: u32,
    /// Input media time (sum of the durations of every earlier sample) at its first sample.
    pub time_in: u64,
    /// Duration of the kept samples, in the track's timescale.
    pub duration: u64,
    /// Bytes of its `moof` and `mdat` in the output.
    pub out_len: u64,
}

/// What the walk found.
#[derive(Debug)]
pub struct Mp4Scan {
    /// The first `ftyp` box, [start, end) in the input.
    pub ftyp: Range<u64>,
    /// The `moov` box, header included, as read.
    pub moov_bytes: Vec<u8>,
    pub moov: Moov,
    /// Index into `moov.tracks` of the one track.
    pub track: usize,
    pub fragments: Vec<Fragment>,
    /// Kept samples and their duration (track timescale).
    pub samples: u64,
    pub duration: u64,
    /// Duration of every sample of the accepted fragments, cut or not.
    pub input_duration: u64,
    /// Bytes of the input up to the end of the last box (or sample) used.
    pub used: u64,
    pub dropped_ftyps: usize,
    pub dropped_moofs: usize,
}

impl Mp4Scan {
    pub fn timescale(&self) -> u32 {
        self.moov.tracks[self.track].timescale
    }

    pub fn trex(&self) -> Option<Trex> {
        self.moov.tracks[self.track].trex
    }
}

fn bad(msg: impl Into<String>) -> MediaError {
    MediaError::NotMp4(msg.into())
}

fn read_err(e: ReadError, what: &str) -> MediaError {
    match e {
        ReadError::Io(e) => MediaError::Io(e),
        ReadError::Eof => bad(format!("input ends inside the {what}")),
        ReadError::Malformed(m) => bad(m),
    }
}

/// Spans of media time to remove, in ticks of the track's timescale: sorted, merged.
#[derive(Debug, Clone, Default)]
pub struct Cuts(Vec<Range<u64>>);

impl Cuts {
    /// From spans in ms of media time (0 = the first sample's start).
    pub fn from_ms(spans: &[Range<u64>], timescale: u32) -> Cuts {
        let ticks = |ms: u64| (u128::from(ms) * u128::from(timescale) / 1000).min(u128::from(u64::MAX)) as u64;
        let mut v: Vec<Range<u64>> =
            spans.iter().map(|r| ticks(r.start)..ticks(r.end)).filter(|r| r.start < r.end).collect();
        v.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(v.len());
        for r in v {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Cuts(merged)
    }

    /// A cursor for times that only grow, from `time`.
    fn cursor(&self, time: u64) -> usize {
        self.0.partition_point(|r| r.end <= time)
    }

    /// Whether `time` is cut, advancing `cursor` (times must not decrease between calls).
    fn contains(&self, cursor: &mut usize, time: u64) -> bool {
        while self.0.get(*cursor).is_some_and(|r| r.end <= time) {
            *cursor += 1;
        }
        self.0.get(*cursor).is_some_and(|r| r.start <= time)
    }
}

/// The kept samples of one run: contiguous spans of entries and of sample data.
#[derive(Debug, Clone)]
pub struct Span {
    /// Entry bytes in the moof buffer.
    pub entries: Range<usize>,
    /// Sample data in the input.
    pub data: Range<u64>,
}

#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// Index into the traf's runs.
    pub run: usize,
    pub samples: u32,
    pub spans: Vec<Span>,
}

/// One fragment as it will be written: the kept samples of each run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    pub samples: u64,
    pub duration: u64,
    pub data_len: u64,
    /// Duration of every sample, kept or not: how far the input timeline advances.
    pub input_duration: u64,
    /// A sample's bytes run past the end of the input: nothing after this fragment is kept.
    pub truncated: bool,
    /// End of the last kept sample's data (or the fragment's first data byte).
    pub data_end: u64,
}

/// Why a fragment cannot be planned.
pub enum PlanError {
    /// Its sample data is not inside the given `mdat` payload: a stale copy, or garbage.
    OutsideMdat,
    Malformed(String),
}

/// What a plan is checked against.
pub struct PlanContext<'a> {
    pub trex: Option<Trex>,
    /// The `mdat` payload the data must lie in, as the box declares it.
    pub mdat: Range<u64>,
    /// Bytes of the input: sample data past this is cut off.
    pub input_len: u64,
    /// Sample data must not start before this (fragments may not share bytes).
    pub data_floor: u64,
    pub time_in: u64,
    pub cuts: &'a Cuts,
}

/// Decides which samples of a fragment are kept (see the module docs) and where their data is.
pub fn plan(buf: &[u8], moof: &Moof, moof_start: u64, ctx: &PlanContext<'_>) -> Result<Plan, PlanError> {
    let traf = &moof.traf;
    let base = traf.base_data_offset.unwrap_or(moof_start);
    let mut plan = Plan { data_end: ctx.data_floor, ..Plan::default() };
    let mut time = ctx.time_in;
    let mut cursor = ctx.cuts.cursor(time);
    let mut next_data = base;
    for (index, run) in traf.runs.iter().enumerate() {
        let start = match run.data_offset {
            Some(off) => base.checked_add_signed(i64::from(off)).ok_or(PlanError::OutsideMdat)?,
            None => next_data,
        };
        if start < ctx.mdat.start || start < plan.data_end {
            return Err(PlanError::OutsideMdat);
        }
        let samples = run.samples(buf, traf, ctx.trex).map_err(PlanError::Malformed)?;
        let mut planned = PlannedRun { run: index, samples: 0, spans: Vec::new() };
        let mut pos = start;
        for s in samples {
            if s.size == 0 {
                return Err(PlanError::Malformed("sample of 0 bytes".into()));
            }
            let end = pos.checked_add(u64::from(s.size)).ok_or(PlanError::OutsideMdat)?;
            if end > ctx.mdat.end {
                return Err(PlanError::OutsideMdat);
            }
            if end > ctx.input_len {
                plan.truncated = true;
                break;
            }
            let cut = ctx.cuts.contains(&mut cursor, time);
            time = time.saturating_add(u64::from(s.duration));
            plan.input_duration = plan.input_duration.saturating_add(u64::from(s.duration));
            if !cut {
                match planned.spans.last_mut() {
                    Some(span) if span.data.end == pos && span.entries.end == s.entry.start => {
                        span.data.end = end;
                        span.entries.end = s.entry.end;
                    }
                    _ => planned.spans.push(Span { entries: s.entry.clone(), data: pos..end }),
                }
                planned.samples += 1;
                plan.samples += 1;
                plan.duration = plan.duration.saturating_add(u64::from(s.duration));
                plan.data_len = plan.data_len.saturating_add(u64::from(s.size));
                plan.data_end = end;
            }
            pos = end;
        }
        plan.data_end = plan.data_end.max(pos.min(ctx.input_len));
        next_data = pos;
        if planned.samples > 0 {
            plan.runs.push(planned);
        }
        if plan.truncated {
            break;
        }
    }
    Ok(plan)
}

/// Bytes of the rewritten `moof` for a plan (see [`crate::mp4_fix`] for the layout).
pub fn out_moof_len(moof: &Moof, plan: &Plan) -> u64 {
    let traf = &moof.traf;
    let tfhd_opt = [traf.sample_description_index, traf.default_duration, traf.default_size, traf.default_flags]
        .iter()
        .filter(|f| f.is_some())
        .count() as u64
        * 4;
    let tfhd = 8 + 8 + tfhd_opt;
    let tfdt = 8 + 4 + 8;
    let truns: u64 = plan
        .runs
        .iter()
        .map(|p| {
            let first_flags = traf.runs.get(p.run).is_some_and(|r| r.first_sample_flags.is_some());
            let entries: u64 = p.spans.iter().map(|s| (s.entries.end - s.entries.start) as u64).sum();
            8 + 4 + 4 + 4 + if first_flags { 4 } else { 0 } + entries
        })
        .sum();
    let mfhd = 16;
    8 + mfhd + 8 + tfhd + tfdt + truns
}

/// `mdat` header length for `data_len` payload bytes: 8, or 16 with a 64-bit size.
pub fn mdat_header_len(data_len: u64) -> u64 {
    if data_len + 8 > u64::from(u32::MAX) { 16 } else { 8 }
}

/// A `moof` read in pass 1, waiting for the `mdat` that holds its samples.
struct Pending {
    start: u64,
    bytes: Vec<u8>,
    moof: Moof,
}

/// Walks the whole input (see the module docs). `cut_ms`: spans of media time to remove.
pub fn scan<S: Source>(src: &mut S, input_len: u64, cut_ms: &[Range<u64>]) -> Result<Mp4Scan, MediaError> {
    if cut_ms.len() > MAX_CUTS {
        return Err(MediaError::Limit(format!("more than {MAX_CUTS} spans to cut")));
    }
    let mut ftyp = None;
    let mut moov: Option<(Vec<u8>, Moov, usize)> = None;
    let mut cuts = Cuts::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut fragments: Vec<Fragment> = Vec::new();
    let (mut samples, mut duration, mut input_duration) = (0u64, 0u64, 0u64);
    let (mut dropped_ftyps, mut dropped_moofs) = (0, 0);
    let mut data_floor = 0u64;

    let used = loop {
        let pos = src.pos();
        let h: BoxHeader = match mp4::read_box_header(src, input_len) {
            Ok(Some(h)) => h,
            Ok(None) => break pos,
            Err(ReadError::Eof) => break pos,
            Err(e) => return Err(read_err(e, "box header")),
        };
        let body_len = h.end - h.data_start;
        match &h.kind {
            b"ftyp" if ftyp.is_none() => {
                if moov.is_some() {
                    return Err(bad("ftyp after moov"));
                }
                ftyp = Some(h.start..h.end);
            }
            b"ftyp" => dropped_ftyps += 1,
            b"moov" => {
                if moov.is_some() {
                    return Err(bad("more than one moov"));
                }
                if ftyp.is_none() {
                    return Err(bad("moov before ftyp"));
                }
                let bytes = read_whole(src, &h, mp4::MAX_MOOV_BYTES, "moov")?;
                let parsed = mp4::parse_moov(&bytes).map_err(bad)?;
                if !parsed.fragmented {
                    return Err(bad("not a fragmented MP4 (no mvex): nothing to fix"));
                }
                let [track] = parsed.tracks.as_slice() else {
                    return Err(bad(format!("{} tracks; only single-track recordings are fixed", parsed.tracks.len())));
                };
                cuts = Cuts::from_ms(cut_ms, track.timescale);
                moov = Some((bytes, parsed, 0));
                continue;
            }
            b"moof" => {
                let Some((_, m, track)) = &moov else {
                    return Err(bad("moof before moov"));
                };
                if h.end > input_len {
                    // Cut off: the fragment is lost, like any cut-off element.
                    break h.start;
                }
                let bytes = read_whole(src, &h, mp4::MAX_MOOF_BYTES, "moof")?;
                let parsed = mp4::parse_moof(&bytes).map_err(bad)?;
                if parsed.traf.track_id != m.tracks[*track].id {
                    return Err(bad(format!("fragment of undeclared track {}", parsed.traf.track_id)));
                }
                if pending.len() >= MAX_PENDING_MOOFS {
                    return Err(bad(format!("more than {MAX_PENDING_MOOFS} moofs without an mdat")));
                }
                pending.push(Pending { start: h.start, bytes, moof: parsed });
                continue;
            }
            b"mdat" => {
                let Some((_, m, track)) = &moov else {
                    return Err(bad("mdat before moov"));
                };
                let trex = m.tracks[*track].trex;
                let mut truncated = false;
                let mut last_end = None;
                let waiting = std::mem::take(&mut pending);
                for (i, p) in waiting.iter().enumerate() {
                    let ctx = PlanContext {
                        trex,
                        mdat: h.data_start..h.end,
                        input_len,
                        data_floor,
                        time_in: input_duration,
                        cuts: &cuts,
                    };
                    match plan(&p.bytes, &p.moof, p.start, &ctx) {
                        Ok(plan) => {
                            input_duration = input_duration.saturating_add(plan.input_duration);
                            data_floor = plan.data_end;
                            last_end = Some(plan.data_end);
                            truncated = plan.truncated;
                            if plan.samples > 0 {
                                if fragments.len() >= MAX_FRAGMENTS {
                                    return Err(MediaError::Limit(format!("more than {MAX_FRAGMENTS} fragments")));
                                }
                                let out_len =
                                    out_moof_len(&p.moof, &plan) + mdat_header_len(plan.data_len) + plan.data_len;
                                fragments.push(Fragment {
                                    moof_start: p.start,
                                    moof_len: p.bytes.len() as u32,
                                    time_in: ctx.time_in,
                                    duration: plan.duration,
                                    out_len,
                                });
                                samples += plan.samples;
                                duration = duration.saturating_add(plan.duration);
                            }
                            if truncated {
                                break;
                            }
                        }
                        Err(PlanError::OutsideMdat)
                            if waiting[i + 1..].iter().any(|q| q.moof.sequence == p.moof.sequence) =>
                        {
                            dropped_moofs += 1;
                        }
                        Err(PlanError::OutsideMdat) => {
                            return Err(bad(format!("moof {} has sample data outside its mdat", p.moof.sequence)));
                        }
                        Err(PlanError::Malformed(m)) => return Err(bad(m)),
                    }
                }
                if truncated || h.end > input_len {
                    break last_end.unwrap_or(h.start);
                }
            }
            // free, an old sidx or mfra, ...: dropped.
            _ => {}
        }
        // Skip the body (moov and moof were read whole above).
        match src.skip(body_len) {
            Ok(()) => {}
            Err(ReadError::Eof) => break h.start,
            Err(e) => return Err(read_err(e, "box")),
        }
    };
    // moofs left waiting at the end lost their mdat to the cut-off tail.
    let used = pending.first().map_or(used, |p| p.start.min(used));
    let ftyp = ftyp.ok_or_else(|| bad("no ftyp"))?;
    let (moov_bytes, moov, track) = moov.ok_or_else(|| bad("no complete moov"))?;
    Ok(Mp4Scan {
        ftyp,
        moov_bytes,
        moov,
        track,
        fragments,
        samples,
        duration,
        input_duration,
        used,
        dropped_ftyps,
        dropped_moofs,
    })
}

/// Reads a whole box (header included) of at most `max` bytes.
fn read_whole<S: Source>(src: &mut S, h: &BoxHeader, max: u64, what: &str) -> Result<Vec<u8>, MediaError> {
    let len = h.end - h.start;
    if len > max {
        return Err(MediaError::Limit(format!("{what} of {len} bytes (at most {max})")));
    }
    let header_len = h.data_start - h.start;
    let mut bytes = Vec::with_capacity(header_len as usize);
    // The header again, as read: parse_moov / parse_moof see the whole box.
    let size32 = if header_len == 16 { 1 } else { len as u32 };
    bytes.extend_from_slice(&size32.to_be_bytes());
    bytes.extend_from_slice(&h.kind);
    if header_len == 16 {
        bytes.extend_from_slice(&len.to_be_bytes());
    }
    src.read_append(len - header_len, &mut bytes).map_err(|e| read_err(e, what))?;
    Ok(bytes)
}

/// The `moov` of any MP4, fragmented or not, wherever it is among the top-level boxes.
pub fn find_moov<R: Read + Seek>(src: &mut SeekSource<R>, input_len: u64) -> Option<Moov> {
    src.seek_to(0).ok()?;
    while let Ok(Some(h)) = mp4::read_box_header(src, input_len) {
        if &h.kind == b"moov" {
            return mp4::parse_moov(&read_whole(src, &h, mp4::MAX_MOOV_BYTES, "moov").ok()?).ok();
        }
        src.skip(h.end - h.data_start).ok()?;
    }
    None
}
