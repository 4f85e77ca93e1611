//! Reads just enough ISO BMFF (MP4) to describe CMAF output truthfully: the
//! track's timescale and exact RFC 6381 codec string from an init segment,
//! and each media segment's decode time, duration and whether it starts on
//! a sync sample.
//!
//! The manifests are written from these measurements rather than from what
//! the encoder was asked for, so `EXTINF`, `SegmentTimeline` and `CODECS`
//! describe the bytes a player will actually get. This is not a general MP4
//! parser: it reads the few boxes ffmpeg's fragmented-MP4 output carries and
//! refuses anything malformed with an error naming the box.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed mp4: {0}")]
pub struct Mp4Error(String);

fn malformed(what: impl Into<String>) -> Mp4Error {
    Mp4Error(what.into())
}

/// What an init segment (`init.mp4`) says about its one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub kind: TrackKind,
    /// Ticks per second of the track's media timeline (`mdhd`).
    pub timescale: u32,
    /// RFC 6381 codec string: `avc1.64001f`, `mp4a.40.2`.
    pub codecs: String,
    /// From `trex`, used when a fragment gives no per-sample duration.
    pub default_sample_duration: u32,
    /// Default sample flags from `trex`.
    pub default_sample_flags: u32,
    /// Audio sample rate (from the sample entry), 0 for video.
    pub sample_rate: u32,
    /// Audio channel count (from the sample entry), 0 for video.
    pub channels: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// What one media segment (`N.m4s`) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTiming {
    /// `tfdt` of the first fragment, in track ticks.
    pub base_decode_time: u64,
    /// Sum of all sample durations, in track ticks.
    pub duration: u64,
    /// True when the first sample is a sync sample (a keyframe).
    pub starts_with_sync_sample: bool,
    pub sample_count: u32,
    /// Bytes from the segment's start through the end of its first
    /// sample's data (the keyframe of a video segment): the byte range an
    /// HLS I-frame playlist entry names. `None` when no size is declared.
    pub first_sample_end: Option<u64>,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8_at(&self, at: usize, what: &str) -> Result<u8, Mp4Error> {
        self.data
            .get(at)
            .copied()
            .ok_or_else(|| malformed(format!("{what} is cut short")))
    }
    fn bytes(&self, range: Range<usize>, what: &str) -> Result<&'a [u8], Mp4Error> {
        self.data
            .get(range)
            .ok_or_else(|| malformed(format!("{what} is cut short")))
    }
    fn u16_at(&self, at: usize, what: &str) -> Result<u16, Mp4Error> {
        let b = self.bytes(at..at + 2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32_at(&self, at: usize, what: &str) -> Result<u32, Mp4Error> {
        let b = self.bytes(at..at + 4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64_at(&self, at: usize, what: &str) -> Result<u64, Mp4Error> {
        let b = self.bytes(at..at + 8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_be_bytes(array))
    }
}

/// A box: its four-character type and its payload.
type Mp4Box<'a> = ([u8; 4], &'a [u8]);

/// The boxes directly inside `data`.
fn children(data: &[u8]) -> Result<Vec<Mp4Box<'_>>, Mp4Error> {
    let reader = Reader { data };
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let size32 = reader.u32_at(at, "box header")?;
        let kind: [u8; 4] = reader
            .bytes(at + 4..at + 8, "box header")?
            .try_into()
            .map_err(|_| malformed("box header"))?;
        let (header, size) = match size32 {
            0 => (8usize, (data.len() - at) as u64),
            1 => (16usize, reader.u64_at(at + 8, "large box size")?),
            size => (8usize, u64::from(size)),
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| at.checked_add(size))
            .filter(|&end| end <= data.len() && end >= at + header)
            .ok_or_else(|| {
                malformed(format!(
                    "box {} has size {size}, beyond its parent",
                    String::from_utf8_lossy(&kind)
                ))
            })?;
        boxes.push((kind, &data[at + header..end]));
        at = end;
    }
    Ok(boxes)
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    Ok(children(data)?
        .into_iter()
        .find(|(found, _)| found == kind)
        .map(|(_, payload)| payload))
}

fn require<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Mp4Error> {
    child(data, kind)?.ok_or_else(|| malformed(format!("no {} box", String::from_utf8_lossy(kind))))
}

/// Writes `language` (ISO 639-2: three lowercase letters) into the `mdhd`
/// box of an init segment with one track, where players and ffprobe read
/// a track's language (ffmpeg's DASH muxer writes `und` whatever it is
/// told).
pub fn set_language(init: &mut [u8], language: &str) -> Result<(), Mp4Error> {
    let letters: [u8; 3] = language
        .as_bytes()
        .try_into()
        .ok()
        .filter(|letters: &[u8; 3]| letters.iter().all(u8::is_ascii_lowercase))
        .ok_or_else(|| malformed(format!("language {language:?} is not an ISO 639-2 code")))?;
    let offset = {
        let data: &[u8] = init;
        let mdhd = require(
            require(require(require(data, b"moov")?, b"trak")?, b"mdia")?,
            b"mdhd",
        )?;
        // ISO 14496-12 §8.4.2: after version/flags, the times and timescale
        // (32 bytes in version 1, 20 in version 0), then the language.
        let at = match (Reader { data: mdhd }).u8_at(0, "mdhd")? {
            1 => 32,
            _ => 20,
        };
        if mdhd.len() < at + 2 {
            return Err(malformed("mdhd is cut short"));
        }
        mdhd.as_ptr() as usize - data.as_ptr() as usize + at
    };
    // One pad bit, then each letter as five bits, offset by 0x60.
    let packed = letters.iter().fold(0u16, |packed, letter| {
        (packed << 5) | u16::from(letter - 0x60)
    });
    init[offset..offset + 2].copy_from_slice(&packed.to_be_bytes());
    Ok(())
}

/// Reads the track description of an init segment with exactly one track.
pub fn parse_init(data: &[u8]) -> Result<TrackInfo, Mp4Error> {
    let moov = require(data, b"moov")?;
    let traks: Vec<&[u8]> = children(moov)?
        .into_iter()
        .filter(|(kind, _)| kind == b"trak")
        .map(|(_, payload)| payload)
        .collect();
    let [trak] = traks[..] else {
        return Err(malformed(format!(
            "init segment has {} tracks; expected one",
            traks.len()
        )));
    };
    let mdia = require(trak, b"mdia")?;
    let mdhd = Reader {
        data: require(mdia, b"mdhd")?,
    };
    let timescale = match mdhd.u8_at(0, "mdhd")? {
        1 => mdhd.u32_at(20, "mdhd")?,
        _ => mdhd.u32_at(12, "mdhd")?,
    };
    if timescale == 0 {
        return Err(malformed("mdhd timescale is 0"));
    }
    let handler = Reader {
        data: require(mdia, b"hdlr")?,
    }
    .bytes(8..12, "hdlr")?;
    let stbl = require(require(mdia, b"minf")?, b"stbl")?;
    let stsd = require(stbl, b"stsd")?;
    // stsd is a full box (4 bytes) with an entry count (4 bytes).
    let entries = children(
        stsd.get(8..)
            .ok_or_else(|| malformed("stsd is cut short"))?,
    )?;
    let (entry_kind, entry) = entries
        .first()
        .copied()
        .ok_or_else(|| malformed("stsd has no sample entry"))?;
    let entry_reader = Reader { data: entry };
    let (kind, codecs, sample_rate, channels) = match (handler, &entry_kind) {
        (b"vide", b"avc1" | b"avc3") => {
            // VisualSampleEntry: 78 bytes of fixed fields, then boxes.
            let avcc = Reader {
                data: require(entry_reader.bytes(78..entry.len(), "avc1")?, b"avcC")?,
            };
            let codecs = format!(
                "{}.{:02x}{:02x}{:02x}",
                String::from_utf8_lossy(&entry_kind),
                avcc.u8_at(1, "avcC")?,
                avcc.u8_at(2, "avcC")?,
                avcc.u8_at(3, "avcC")?
            );
            (TrackKind::Video, codecs, 0, 0)
        }
        (b"vide", b"av01") => {
            // AV1 ISOBMFF binding §2.3.3: av1C holds the sequence header's
            // profile, level, tier and bit depth, which make the codecs
            // string av01.P.LLT.DD (§5).
            let av1c = Reader {
                data: require(entry_reader.bytes(78..entry.len(), "av01")?, b"av1C")?,
            };
            let profile_and_level = av1c.u8_at(1, "av1C")?;
            let flags = av1c.u8_at(2, "av1C")?;
            let profile = profile_and_level >> 5;
            let level = profile_and_level & 0b1_1111;
            let tier = if flags & 0x80 != 0 { 'H' } else { 'M' };
            let bit_depth = match (flags & 0x40 != 0, flags & 0x20 != 0) {
                (true, true) => 12,
                (true, false) => 10,
                _ => 8,
            };
            let codecs = format!("av01.{profile}.{level:02}{tier}.{bit_depth:02}");
            (TrackKind::Video, codecs, 0, 0)
        }
        (b"soun", b"mp4a") => {
            // AudioSampleEntry: 28 bytes of fixed fields, then boxes.
            let channels = entry_reader.u16_at(16, "mp4a")?;
            let sample_rate = entry_reader.u32_at(24, "mp4a")? >> 16;
            let esds = require(entry_reader.bytes(28..entry.len(), "mp4a")?, b"esds")?;
            (TrackKind::Audio, mp4a_codecs(esds)?, sample_rate, channels)
        }
        (b"soun", b"ac-3") => {
            // ETSI TS 102 366 Annex F: the channel count of the sample entry
            // is not meaningful; the dac3 box's acmod and lfeon are.
            let sample_rate = entry_reader.u32_at(24, "ac-3")? >> 16;
            let dac3 = Reader {
                data: require(entry_reader.bytes(28..entry.len(), "ac-3")?, b"dac3")?,
            };
            // fscod(2) bsid(5) bsmod(3) acmod(3) lfeon(1) ...
            let bits = (u32::from(dac3.u8_at(0, "dac3")?) << 16)
                | (u32::from(dac3.u8_at(1, "dac3")?) << 8)
                | u32::from(dac3.u8_at(2, "dac3")?);
            let acmod = (bits >> 11) & 0b111;
            let lfeon = (bits >> 10) & 1;
            let full_range = [2, 1, 2, 3, 3, 4, 4, 5][acmod as usize];
            (
                TrackKind::Audio,
                "ac-3".to_string(),
                sample_rate,
                (full_range + lfeon) as u16,
            )
        }
        (handler, entry_kind) => {
            return Err(malformed(format!(
                "unsupported track: handler {} with sample entry {}",
                String::from_utf8_lossy(handler),
                String::from_utf8_lossy(entry_kind)
            )));
        }
    };
    let (default_sample_duration, default_sample_flags) = match child(moov, b"mvex")? {
        Some(mvex) => match child(mvex, b"trex")? {
            Some(trex) => {
                let trex = Reader { data: trex };
                (trex.u32_at(12, "trex")?, trex.u32_at(20, "trex")?)
            }
            None => (0, 0),
        },
        None => return Err(malformed("init segment has no mvex box: not fragmented")),
    };
    Ok(TrackInfo {
        kind,
        timescale,
        codecs,
        default_sample_duration,
        default_sample_flags,
        sample_rate,
        channels,
    })
}

/// Reads an MPEG-4 descriptor header at `at`: (tag, payload range).
fn descriptor(data: &[u8], at: usize) -> Result<(u8, Range<usize>), Mp4Error> {
    let reader = Reader { data };
    let tag = reader.u8_at(at, "esds descriptor")?;
    let mut length = 0usize;
    let mut position = at + 1;
    // Up to four length bytes, seven bits each, high bit = more follow.
    for _ in 0..4 {
        let byte = reader.u8_at(position, "esds descriptor length")?;
        position += 1;
        length = (length << 7) | usize::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = position + length;
    if end > data.len() {
        return Err(malformed("esds descriptor is cut short"));
    }
    Ok((tag, position..end))
}

/// `mp4a.OO.A`: object type indication (hex) and, for MPEG-4 audio, the
/// audio object type from the decoder specific info (RFC 6381 §3.3).
fn mp4a_codecs(esds: &[u8]) -> Result<String, Mp4Error> {
    let reader = Reader { data: esds };
    // Full box header, then the ES descriptor (tag 3).
    let (tag, es) = descriptor(esds, 4)?;
    if tag != 3 {
        return Err(malformed("esds has no ES descriptor"));
    }
    let flags = reader.u8_at(es.start + 2, "ES descriptor")?;
    let mut at = es.start + 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(reader.u8_at(at, "ES descriptor URL")?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, config) = descriptor(esds, at)?;
    if tag != 4 {
        return Err(malformed("esds has no decoder config descriptor"));
    }
    let object_type = reader.u8_at(config.start, "decoder config")?;
    if object_type != 0x40 {
        return Ok(format!("mp4a.{object_type:02x}"));
    }
    let (tag, specific) = descriptor(esds, config.start + 13)?;
    if tag != 5 {
        return Err(malformed("esds has no decoder specific info"));
    }
    let first = reader.u8_at(specific.start, "decoder specific info")?;
    let mut audio_object_type = first >> 3;
    if audio_object_type == 31 {
        let second = reader.u8_at(specific.start + 1, "decoder specific info")?;
        audio_object_type = 32 + (((first & 0x07) << 3) | (second >> 5));
    }
    Ok(format!("mp4a.40.{audio_object_type}"))
}

/// Bit 16 of ISO BMFF sample flags: `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0001_0000;

/// Measures one media segment: every `moof` in it, every `trun` in each.
/// The `mdat` boxes must hold the bytes the samples declare: a segment cut
/// short (say, by a full disk) at a box boundary is refused too.
pub fn parse_segment(data: &[u8], track: &TrackInfo) -> Result<SegmentTiming, Mp4Error> {
    let mut base_decode_time = None;
    let mut duration = 0u64;
    let mut sample_count = 0u32;
    let mut first_sample_flags = None;
    let mut first_sample_end = None;
    let boxes = children(data)?;
    let media_data_bytes: u64 = boxes
        .iter()
        .filter(|(kind, _)| kind == b"mdat")
        .map(|(_, payload)| payload.len() as u64)
        .sum();
    // The sum of the samples' sizes, while every size is known (tfhd
    // default or trun entry).
    let mut sample_bytes = Some(0u64);
    for &(kind, moof) in &boxes {
        if &kind != b"moof" {
            continue;
        }
        let moof_start = box_start(data, &kind, moof);
        for (kind, traf) in children(moof)? {
            if &kind != b"traf" {
                continue;
            }
            let tfhd = Reader {
                data: require(traf, b"tfhd")?,
            };
            let tfhd_flags = tfhd.u32_at(0, "tfhd")? & 0x00ff_ffff;
            let mut at = 8; // version/flags, track id
            // ISO 14496-12 §8.8.7: sample data offsets count from the
            // explicit base data offset, else (default-base-is-moof, or the
            // first traf of a fragment) from the start of the moof.
            let mut base_offset = moof_start;
            if tfhd_flags & 0x01 != 0 {
                base_offset = tfhd.u64_at(at, "tfhd")?;
                at += 8;
            }
            if tfhd_flags & 0x02 != 0 {
                at += 4;
            }
            let mut default_duration = track.default_sample_duration;
            let mut default_flags = track.default_sample_flags;
            let mut default_size = None;
            if tfhd_flags & 0x08 != 0 {
                default_duration = tfhd.u32_at(at, "tfhd")?;
                at += 4;
            }
            if tfhd_flags & 0x10 != 0 {
                default_size = Some(tfhd.u32_at(at, "tfhd")?);
                at += 4;
            }
            if tfhd_flags & 0x20 != 0 {
                default_flags = tfhd.u32_at(at, "tfhd")?;
            }
            if base_decode_time.is_none() {
                let tfdt = Reader {
                    data: require(traf, b"tfdt")?,
                };
                base_decode_time = Some(match tfdt.u8_at(0, "tfdt")? {
                    1 => tfdt.u64_at(4, "tfdt")?,
                    _ => u64::from(tfdt.u32_at(4, "tfdt")?),
                });
            }
            for (kind, trun) in children(traf)? {
                if &kind != b"trun" {
                    continue;
                }
                let trun = Reader { data: trun };
                let flags = trun.u32_at(0, "trun")? & 0x00ff_ffff;
                let count = trun.u32_at(4, "trun")?;
                let mut at = 8;
                let mut data_offset = None;
                if flags & 0x01 != 0 {
                    data_offset = Some(i64::from(trun.u32_at(at, "trun")? as i32));
                    at += 4;
                }
                let mut first_flags = None;
                if flags & 0x04 != 0 {
                    first_flags = Some(trun.u32_at(at, "trun")?);
                    at += 4;
                }
                for index in 0..count {
                    let mut sample_duration = default_duration;
                    let mut sample_flags = default_flags;
                    let mut sample_size = default_size;
                    if flags & 0x100 != 0 {
                        sample_duration = trun.u32_at(at, "trun sample")?;
                        at += 4;
                    }
                    if flags & 0x200 != 0 {
                        sample_size = Some(trun.u32_at(at, "trun sample")?);
                        at += 4;
                    }
                    sample_bytes = sample_bytes
                        .zip(sample_size)
                        .map(|(sum, size)| sum + u64::from(size));
                    if flags & 0x400 != 0 {
                        sample_flags = trun.u32_at(at, "trun sample")?;
                        at += 4;
                    }
                    if flags & 0x800 != 0 {
                        at += 4;
                    }
                    if index == 0
                        && let Some(first) = first_flags
                    {
                        sample_flags = first;
                    }
                    if first_sample_flags.is_none() {
                        first_sample_flags = Some(sample_flags);
                        first_sample_end = match (data_offset, sample_size) {
                            (Some(offset), Some(size)) => {
                                let start = i64::try_from(base_offset)
                                    .ok()
                                    .and_then(|base| base.checked_add(offset))
                                    .and_then(|start| u64::try_from(start).ok());
                                Some(start.map(|start| (start, start + u64::from(size))))
                            }
                            _ => None,
                        };
                    }
                    duration += u64::from(sample_duration);
                }
                sample_count += count;
            }
        }
    }
    let base_decode_time = base_decode_time.ok_or_else(|| malformed("segment has no moof"))?;
    if sample_count == 0 {
        return Err(malformed("segment has no samples"));
    }
    if media_data_bytes == 0 {
        return Err(malformed("segment has no media data (mdat)"));
    }
    if let Some(needed) = sample_bytes
        && needed > media_data_bytes
    {
        return Err(malformed(format!(
            "the samples need {needed} bytes but mdat holds {media_data_bytes}: the segment was cut short"
        )));
    }
    // The first sample must lie within one mdat of this segment, or the
    // byte range an I-frame playlist names would not hold it.
    let first_sample_end = match first_sample_end {
        None => None,
        Some(Some((start, end))) => {
            let inside = boxes.iter().any(|&(kind, payload)| {
                let payload_start = (payload.as_ptr() as usize - data.as_ptr() as usize) as u64;
                &kind == b"mdat"
                    && start >= payload_start
                    && end <= payload_start + payload.len() as u64
            });
            if !inside {
                return Err(malformed(format!(
                    "the first sample ({start}..{end}) lies outside the segment's media data"
                )));
            }
            Some(end)
        }
        Some(None) => {
            return Err(malformed("the first sample's data offset is out of range"));
        }
    };
    let starts_with_sync_sample = match track.kind {
        // Every AAC frame decodes on its own.
        TrackKind::Audio => true,
        TrackKind::Video => first_sample_flags.unwrap_or(NON_SYNC_SAMPLE) & NON_SYNC_SAMPLE == 0,
    };
    Ok(SegmentTiming {
        base_decode_time,
        duration,
        starts_with_sync_sample,
        sample_count,
        first_sample_end,
    })
}

/// Where in `data` the box of type `kind` whose payload is `payload` (a
/// slice of `data`) starts: 8 header bytes before it, the type last, or 16
/// for a 64-bit size, which follows the type.
fn box_start(data: &[u8], kind: &[u8; 4], payload: &[u8]) -> u64 {
    let payload_start = payload.as_ptr() as usize - data.as_ptr() as usize;
    let compact = &data[payload_start - 4..payload_start] == kind;
    (payload_start - if compact { 8 } else { 16 }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn boxes_beyond_their_parent_are_refused() {
        let mut data = mp4_box(b"moov", &[0; 4]);
        data[3] = 200;
        assert!(parse_init(&data).unwrap_err().to_string().contains("moov"));
        assert!(parse_init(&mp4_box(b"free", &[])).is_err());
    }

    #[test]
    fn aac_codec_string_comes_from_the_decoder_specific_info() {
        // ES descriptor (tag 3) > decoder config (tag 4, type 0x40) >
        // decoder specific info (tag 5) starting 0x12 = AAC LC (object type 2).
        let specific = [0x05, 0x02, 0x12, 0x10];
        let mut config = vec![0x04, (13 + specific.len()) as u8, 0x40, 0x15];
        config.extend_from_slice(&[0; 11]);
        config.extend_from_slice(&specific);
        let mut es = vec![0x03, (3 + config.len()) as u8, 0, 1, 0];
        es.extend_from_slice(&config);
        let mut esds = vec![0, 0, 0, 0];
        esds.extend_from_slice(&es);
        assert_eq!(mp4a_codecs(&esds).unwrap(), "mp4a.40.2");
        // HE-AAC (object type 5).
        let last = esds.len() - 2;
        esds[last] = 0x2b;
        assert_eq!(mp4a_codecs(&esds).unwrap(), "mp4a.40.5");
    }

    #[test]
    fn segment_durations_sum_trun_samples_and_see_keyframes() {
        let track = TrackInfo {
            kind: TrackKind::Video,
            timescale: 12800,
            codecs: "avc1.64000d".into(),
            default_sample_duration: 512,
            default_sample_flags: NON_SYNC_SAMPLE,
            sample_rate: 0,
            channels: 0,
        };
        let tfhd = mp4_box(b"tfhd", &[0, 0x02, 0, 0, 0, 0, 0, 1]);
        let mut tfdt_payload = vec![1, 0, 0, 0];
        tfdt_payload.extend_from_slice(&51200u64.to_be_bytes());
        let tfdt = mp4_box(b"tfdt", &tfdt_payload);
        // trun: first-sample-flags present (sync), three samples at the
        // default duration.
        let mut trun_payload = vec![0, 0, 0, 0x04];
        trun_payload.extend_from_slice(&3u32.to_be_bytes());
        trun_payload.extend_from_slice(&0u32.to_be_bytes());
        let trun = mp4_box(b"trun", &trun_payload);
        let traf = mp4_box(b"traf", &[tfhd.clone(), tfdt.clone(), trun].concat());
        let moof = mp4_box(b"moof", &traf);
        let segment = [moof.clone(), mp4_box(b"mdat", &[0; 16])].concat();
        let timing = parse_segment(&segment, &track).unwrap();
        assert_eq!(
            timing,
            SegmentTiming {
                base_decode_time: 51200,
                duration: 1536,
                starts_with_sync_sample: true,
                sample_count: 3,
                first_sample_end: None,
            }
        );
        assert!(parse_segment(&mp4_box(b"mdat", &[]), &track).is_err());

        // Cut short at the box boundary: the moof alone.
        let error = parse_segment(&moof, &track).unwrap_err().to_string();
        assert!(error.contains("no media data"), "{error}");
        // Sample sizes (trun flag 0x200) larger than the mdat.
        let mut trun_payload = vec![0, 0, 0x02, 0x04];
        trun_payload.extend_from_slice(&2u32.to_be_bytes());
        trun_payload.extend_from_slice(&0u32.to_be_bytes());
        trun_payload.extend_from_slice(&10u32.to_be_bytes());
        trun_payload.extend_from_slice(&10u32.to_be_bytes());
        let traf = mp4_box(
            b"traf",
            &[tfhd, tfdt, mp4_box(b"trun", &trun_payload)].concat(),
        );
        let moof = mp4_box(b"moof", &traf);
        let whole = [moof.clone(), mp4_box(b"mdat", &[0; 20])].concat();
        assert_eq!(parse_segment(&whole, &track).unwrap().sample_count, 2);
        let short = [moof, mp4_box(b"mdat", &[0; 19])].concat();
        let error = parse_segment(&short, &track).unwrap_err().to_string();
        assert!(error.contains("cut short"), "{error}");
    }
    #[test]
    fn first_sample_end_counts_from_the_moof_after_styp_and_sidx() {
        let track = TrackInfo {
            kind: TrackKind::Video,
            timescale: 12800,
            codecs: "avc1.64000d".into(),
            default_sample_duration: 512,
            default_sample_flags: NON_SYNC_SAMPLE,
            sample_rate: 0,
            channels: 0,
        };
        // ffmpeg's layout: styp, sidx, then moof (default-base-is-moof)
        // whose trun carries a data offset, first-sample flags and sizes.
        let segment = |data_offset: u32, mdat_bytes: usize| {
            let tfhd = mp4_box(b"tfhd", &[0, 0x02, 0, 0, 0, 0, 0, 1]);
            let tfdt = mp4_box(b"tfdt", &[0; 8]);
            let trun_of = |data_offset: u32| {
                let mut payload = vec![0, 0, 0x02, 0x05];
                payload.extend_from_slice(&2u32.to_be_bytes());
                payload.extend_from_slice(&data_offset.to_be_bytes());
                payload.extend_from_slice(&0u32.to_be_bytes());
                payload.extend_from_slice(&30u32.to_be_bytes());
                payload.extend_from_slice(&10u32.to_be_bytes());
                mp4_box(b"trun", &payload)
            };
            let traf = mp4_box(b"traf", &[tfhd, tfdt, trun_of(data_offset)].concat());
            let moof = mp4_box(b"moof", &[mp4_box(b"mfhd", &[0; 8]), traf].concat());
            let prefix = [mp4_box(b"styp", &[0; 8]), mp4_box(b"sidx", &[0; 20])].concat();
            (
                prefix.len(),
                moof.len(),
                [prefix, moof, mp4_box(b"mdat", &vec![0; mdat_bytes])].concat(),
            )
        };
        let (prefix, moof, _) = segment(0, 40);
        // The samples start right after the mdat header.
        let data_offset = (moof + 8) as u32;
        let (_, _, whole) = segment(data_offset, 40);
        let timing = parse_segment(&whole, &track).unwrap();
        assert_eq!(
            timing.first_sample_end,
            Some((prefix + moof + 8 + 30) as u64)
        );
        // An offset that points past the mdat is refused, never indexed.
        let (_, _, wrong) = segment(data_offset + 20, 40);
        let error = parse_segment(&wrong, &track).unwrap_err().to_string();
        assert!(
            error.contains("outside the segment's media data"),
            "{error}"
        );
    }
}
