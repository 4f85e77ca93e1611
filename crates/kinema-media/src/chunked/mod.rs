//! One video encoded in time chunks by many workers, into exactly the
//! segments one whole encode would make.
//!
//! A [`ChunkedPlan`] (serialisable: queue tasks carry it) splits the source
//! at segment boundaries into chunks of about
//! [`ChunkConfig::chunk_seconds`]. The tasks are plain functions over local
//! directories; moving files between the store and a worker's scratch is
//! the caller's business:
//!
//! - [`run_chunk`]: every video rung over one chunk's source time, its
//!   segments numbered and timed as in the whole encode (see
//!   [`EncodePart::VideoChunk`](crate::transcode::EncodePart::VideoChunk));
//! - [`run_audio`]: every audio rendition once over the whole source (AAC
//!   encoded per chunk would restart its priming at every chunk and leave
//!   gaps), with the thumbnails and subtitle tracks in the same run: they
//!   need one pass over the whole source each, and this task makes one
//!   anyway, so no extra pass is added for them;
//! - [`assemble`]: from all of those outputs copied into one staging
//!   directory, checks that the chunks' init segments are identical and
//!   their segments continuous, then measures, writes playlists, MPD,
//!   download and checksums and publishes, exactly as a whole ingest does.
//!
//! A source shorter than two chunks is not split ([`ChunkedPlan::is_chunked`]
//! is false): [`run_whole`] encodes it in one run, then [`assemble`]
//! publishes it.
//!
//! Not here: the queue, leases, retries and object transfer (the worker's),
//! and probing a source the caller has not fetched.

mod assemble;
mod run;

use std::path::Path;

use kinema_core::ladder::LadderPlan;
use serde::{Deserialize, Serialize};

use crate::pipeline::{IngestConfig, Progress, Stage};
use crate::probe::{self, SourceInfo};
use crate::subtitle_tracks::plan_subtitles;
use crate::subtitles::SidecarSubtitle;
use crate::transcode::{EncodePart, EncoderSettings};
use crate::{MediaError, supervise};

pub use assemble::{AssembleRequest, assemble};
pub use run::{run_audio, run_chunk, run_whole};

/// The longest chunk accepted, seconds: past an hour a chunk is no longer a
/// unit of work that a lost worker can afford to redo.
pub const MAX_CHUNK_SECONDS: u32 = 3600;

/// Containers whose demuxer seeks by an index to the keyframe at or before
/// a time, so a chunk's `-ss` lands where the whole encode's frame is.
/// Others (MPEG-TS and PS, Ogg, FLV, raw streams) seek by bytes or scan,
/// and ffmpeg's MPEG-TS demuxer lands on the next keyframe, seconds late:
/// such sources are encoded whole.
pub const SEEKABLE_DEMUXERS: [&str; 3] = ["mov", "matroska", "avi"];

/// How a long video is split (`[ingest.chunked]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkConfig {
    /// Source seconds per chunk, rounded to whole segments; a source shorter
    /// than two chunks is encoded in one task.
    pub chunk_seconds: u32,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self { chunk_seconds: 60 }
    }
}

impl ChunkConfig {
    pub fn validate(&self, segment_seconds: u32) -> Result<(), MediaError> {
        if self.chunk_seconds < segment_seconds || self.chunk_seconds > MAX_CHUNK_SECONDS {
            return Err(MediaError::Settings(format!(
                "chunk_seconds {} is out of range; use {segment_seconds} (one segment) to \
                 {MAX_CHUNK_SECONDS}",
                self.chunk_seconds
            )));
        }
        Ok(())
    }
}

/// One chunk: a run of whole segments of every video rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position among the plan's chunks, from 0.
    pub index: u32,
    /// Number of its first segment, as the whole encode numbers them (from 1).
    pub first_segment: u64,
    /// How many segments it makes; `None` for the last chunk, which runs to
    /// the end of the source.
    pub segments: Option<u64>,
    /// Where it starts in the source, seconds (a segment boundary).
    pub start_seconds: f64,
}

/// The encoder settings every chunk must share: x264 writes them into its
/// bitstream, and chunks made with different ones would not be one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedEncoder {
    pub preset: String,
    pub av1_preset: u8,
}

/// Everything the tasks of one chunked ingest need, decided once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkedPlan {
    /// The probed source, audio tracks already filtered by language.
    pub source: SourceInfo,
    pub ladder: LadderPlan,
    /// Subtitle files published beside the source's own text tracks; their
    /// paths must be readable where [`run_audio`] runs.
    pub sidecars: Vec<SidecarSubtitle>,
    pub encoder: PlannedEncoder,
    /// At least one; two or more when the source is split.
    pub chunks: Vec<Chunk>,
}

impl ChunkedPlan {
    /// Whether the source is split; if not, [`run_whole`] encodes it.
    pub fn is_chunked(&self) -> bool {
        self.chunks.len() >= 2
    }

    /// Seconds of one segment: a whole number of frames.
    pub fn segment_seconds(&self) -> f64 {
        match (self.ladder.frame_rate, self.ladder.gop_frames) {
            (Some(rate), Some(gop)) => f64::from(gop) / rate.as_f64(),
            _ => f64::from(self.ladder.segment_seconds),
        }
    }

    /// Media seconds chunk `index` encodes (the last one to the source's end).
    pub fn chunk_media_seconds(&self, index: usize) -> f64 {
        let Some(chunk) = self.chunks.get(index) else {
            return 0.0;
        };
        match chunk.segments {
            Some(segments) => segments as f64 * self.segment_seconds(),
            None => (self.source.duration_seconds - chunk.start_seconds).max(0.0),
        }
    }

    /// The job's progress when its chunks have written `chunk_seconds_written`
    /// media seconds in all (the sum over chunks of what [`run_chunk`]
    /// reported): transcoding spans the same share of the percent scale as
    /// in a whole ingest.
    pub fn progress(&self, chunk_seconds_written: f64) -> Progress {
        let total = self.source.duration_seconds.max(f64::EPSILON);
        let done = (chunk_seconds_written / total).clamp(0.0, 1.0);
        Progress::at(Stage::Transcoding, 2.0 + done * 93.0)
    }

    pub(crate) fn encoder_settings(&self, config: &IngestConfig) -> EncoderSettings {
        EncoderSettings {
            preset: self.encoder.preset.clone(),
            threads: config.threads,
            av1_preset: self.encoder.av1_preset,
        }
    }

    /// The encode of chunk `index`, or a clear error for an index the plan
    /// does not have.
    pub(crate) fn chunk_part(&self, index: usize) -> Result<(&Chunk, EncodePart), MediaError> {
        let chunk = self.chunks.get(index).ok_or_else(|| {
            MediaError::Settings(format!(
                "chunk {index} is not in the plan, which has {} chunks",
                self.chunks.len()
            ))
        })?;
        let gop = u64::from(self.ladder.gop_frames.unwrap_or(1));
        let part = EncodePart::VideoChunk {
            start_seconds: chunk.start_seconds,
            frames: chunk.segments.map(|segments| segments * gop),
        };
        Ok((chunk, part))
    }
}

/// Plans a chunked ingest of a probed `source`: applies the source limits
/// and audio languages of `config`, plans the ladder and subtitles, and
/// splits the video at segment boundaries into chunks of
/// `config.chunked.chunk_seconds`.
pub fn plan(
    mut source: SourceInfo,
    config: &IngestConfig,
    sidecars: &[SidecarSubtitle],
) -> Result<ChunkedPlan, MediaError> {
    config.validate()?;
    config.limits.check(&source)?;
    source.keep_audio_languages(&config.audio_languages)?;
    let ladder = kinema_core::ladder::plan(&source.shape(), &config.ladder)?;
    // Refuses too many subtitle tracks now, not in the last task.
    plan_subtitles(&source, sidecars)?;
    let chunks = split(&source, &ladder, &config.chunked);
    Ok(ChunkedPlan {
        source,
        ladder,
        sidecars: sidecars.to_vec(),
        encoder: PlannedEncoder {
            preset: config.preset.clone(),
            av1_preset: config.av1_preset,
        },
        chunks,
    })
}

/// Probes the source at `source_path` and [`plan`]s its chunked ingest.
pub async fn probe_and_plan(
    config: &IngestConfig,
    source_path: &Path,
    sidecars: &[SidecarSubtitle],
) -> Result<ChunkedPlan, MediaError> {
    supervise::check_tool(&config.ffprobe).await?;
    let source = probe::probe(&config.ffprobe, source_path).await?;
    plan(source, config, sidecars)
}

/// Chunks of whole segments: `chunk_seconds` rounded to segments, the
/// remainder of the source in the last chunk (from half a chunk to one and a
/// half), and one chunk when the source
/// is shorter than two, has no video, or is in a container that cannot be
/// seeked exactly ([`SEEKABLE_DEMUXERS`]).
fn split(source: &SourceInfo, ladder: &LadderPlan, chunking: &ChunkConfig) -> Vec<Chunk> {
    let whole = vec![Chunk {
        index: 0,
        first_segment: 1,
        segments: None,
        start_seconds: 0.0,
    }];
    let (Some(rate), Some(gop)) = (ladder.frame_rate, ladder.gop_frames) else {
        return whole;
    };
    if ladder.video.is_empty()
        || source.video.is_none()
        || rate.num == 0
        || rate.den == 0
        || !SEEKABLE_DEMUXERS.contains(&source.demuxer())
    {
        return whole;
    }
    let segments_per_chunk =
        (f64::from(chunking.chunk_seconds) / f64::from(ladder.segment_seconds)).round() as u64;
    let segments_per_chunk = segments_per_chunk.max(1);
    let frames_per_segment = u64::from(gop);
    // Whole segments the source fills; the tolerance keeps a duration
    // rounded in the container (23.999 s) from losing its last segment.
    let frames = source.duration_seconds * rate.as_f64();
    let full_segments = ((frames + 0.01) / frames_per_segment as f64).floor() as u64;
    if full_segments < 2 * segments_per_chunk {
        return whole;
    }
    // The nearest whole number of chunks: the last, which takes the rest,
    // is then half to one and a half chunks long, never almost two.
    let count = ((full_segments as f64 / segments_per_chunk as f64).round() as u64).max(2);
    (0..count)
        .map(|index| {
            let first_frame = index * segments_per_chunk * frames_per_segment;
            Chunk {
                index: index as u32,
                first_segment: index * segments_per_chunk + 1,
                segments: (index + 1 < count).then_some(segments_per_chunk),
                // Exact for NTSC rates too: a frame count times den / num.
                start_seconds: first_frame as f64 * f64::from(rate.den) / f64::from(rate.num),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
