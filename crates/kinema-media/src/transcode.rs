//! The one ffmpeg command that encodes a whole ladder.
//!
//! The source is decoded once; `-filter_complex` normalises it (deinterlace,
//! tone-map HDR, constant frame rate — all before the split, so every rung
//! sees the same frames) and splits it into one scaled branch per rung plus
//! two thumbnail branches. Every rung gets the same closed GOP of exactly one
//! segment (`-g G -keyint_min G -sc_threshold 0 -flags +cgop`), so all
//! renditions have keyframes on the same frames. ffmpeg's `dash` muxer
//! writes fragmented MP4 for every stream in the same process (FACTS.md):
//! `N/init.mp4` and `N/{1,2,…}.m4s` per output stream N. We discard its
//! MPD and write our manifests from the segments themselves.
//!
//! Text subtitle tracks are extracted by the same run, as extra outputs
//! (`-map 0:N -c:s webvtt -f webvtt sub{k}/source.vtt`): no second pass
//! over the source, and cue times on the same output timeline as the CMAF
//! segments. Bitmap subtitle tracks are not mapped at all.
//!
//! The same list, parametrised by an [`EncodePart`], encodes a video in
//! time chunks (see [`crate::chunked`]): a chunk seeks to a segment
//! boundary (`-ss` before `-i`), encodes exactly its frames of every rung
//! (`-frames:v`), and shifts its output timestamps back to where they were
//! in the source (`-output_ts_offset`); the mp4 muxer's `frag_discont` flag
//! makes the first fragment's `tfdt` carry that offset instead of starting
//! from zero behind an edit list, so the chunk's init segment is byte for
//! byte the whole encode's and its segments continue its timeline. Audio,
//! thumbnails and subtitles are the other part, over the whole source.
//!
//! Building the argument list is a pure function, snapshot-tested.

use std::path::Path;

use kinema_core::ladder::{FrameRate, LadderPlan, VideoCodec};

use crate::probe::{self, SourceInfo};
use crate::thumbs::ThumbnailPlan;

/// The name ffmpeg's own MPD is written under in the staging directory; it
/// is deleted before publishing.
pub const FFMPEG_MPD: &str = "ffmpeg-dash.mpd";

/// Encoder settings that are not part of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// x264 preset (`veryfast`; tests use `ultrafast`).
    pub preset: String,
    /// Encoder threads; 0 lets ffmpeg choose.
    pub threads: u32,
    /// SVT-AV1 preset for AV1 rungs: 0 (slowest, best) … 13 (fastest).
    pub av1_preset: u8,
}

/// Which part of a video one ffmpeg run encodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EncodePart {
    /// Every rung, every audio rendition, the thumbnails and the subtitle
    /// tracks, in one run over the whole source.
    Whole,
    /// Every video rung, over `frames` frames (to the end of the source when
    /// `None`) from `start_seconds`, a segment boundary; output timestamps
    /// are those of the whole encode.
    VideoChunk {
        start_seconds: f64,
        frames: Option<u64>,
    },
    /// Everything but the video rungs, over the whole source: the audio
    /// renditions (stream 0 onwards), thumbnails and subtitle tracks.
    AudioAndExtras,
}

impl EncodePart {
    fn has_video(self) -> bool {
        !matches!(self, EncodePart::AudioAndExtras)
    }

    fn has_audio_and_extras(self) -> bool {
        !matches!(self, EncodePart::VideoChunk { .. })
    }
}

/// The output directory of ffmpeg stream `index` (videos first, in plan
/// order, then audio), before it is renamed to its rendition id.
pub fn stream_dir(index: usize) -> String {
    index.to_string()
}

/// The directory of the `k`-th published subtitle track (text tracks of
/// the source first, in its order, then sidecar files).
pub fn subtitle_dir(k: usize) -> String {
    format!("sub{k}")
}

/// The WebVTT file ffmpeg extracts a subtitle track into, inside its
/// [`subtitle_dir`]; removed once segmented.
pub const SUBTITLE_EXTRACT: &str = "source.vtt";

/// The sprite's tiles a video chunk writes in `thumbs/`, one image per
/// thumbnail interval that begins in it, numbered from 1.
pub const CHUNK_TILES: &str = "tile-%05d.png";

/// Whether the run of `part` shows the poster's frame (the first at or
/// after the poster time, on the output's constant frame rate): always for
/// the whole video, for exactly one chunk when chunked.
fn holds_poster(thumbs: &ThumbnailPlan, frame_rate: FrameRate, part: EncodePart) -> bool {
    let EncodePart::VideoChunk {
        start_seconds,
        frames,
    } = part
    else {
        return true;
    };
    let (num, den) = (f64::from(frame_rate.num), f64::from(frame_rate.den));
    // As the filter graph writes it.
    let poster_at = (thumbs.poster_at_seconds * 1000.0).round() / 1000.0;
    let poster_frame = (poster_at * num / den - 1e-6).ceil().max(0.0);
    let first_frame = (start_seconds * num / den).round();
    poster_frame >= first_frame
        && frames.is_none_or(|frames| poster_frame < first_frame + frames as f64)
}

/// One output stream per audio rendition, each from its source track.
fn map_audio(args: &mut Vec<String>, source: &SourceInfo, plan: &LadderPlan, part: EncodePart) {
    if !part.has_audio_and_extras() {
        return;
    }
    for rendition in &plan.audio {
        if let Some(track) = source.audio.get(rendition.track) {
            args.push("-map".to_string());
            args.push(format!("0:{}", track.index));
        }
    }
}

/// How many output streams ffmpeg writes: every video rung, then every
/// audio rendition.
pub fn stream_count(plan: &LadderPlan) -> usize {
    plan.video.len() + plan.audio.len()
}

/// How many output streams the run of `part` writes: its video rungs, then
/// its audio renditions.
pub fn part_stream_count(plan: &LadderPlan, part: EncodePart) -> usize {
    let video = if part.has_video() {
        plan.video.len()
    } else {
        0
    };
    let audio = if part.has_audio_and_extras() {
        plan.audio.len()
    } else {
        0
    };
    video + audio
}

/// Arguments for `ffmpeg` encoding `part`, writing under `out_dir` (which
/// must exist, with one subdirectory per stream and `thumbs/`).
pub fn ffmpeg_args(
    source_path: &Path,
    source: &SourceInfo,
    plan: &LadderPlan,
    thumbnails: Option<&ThumbnailPlan>,
    settings: &EncoderSettings,
    part: EncodePart,
    out_dir: &Path,
) -> Vec<String> {
    let thumbnails = thumbnails.filter(|_| part.has_video());
    // Whether this run makes the poster (the chunk holding its frame).
    let poster_here = thumbnails
        .zip(plan.frame_rate)
        .is_some_and(|(thumbs, rate)| holds_poster(thumbs, rate, part));
    let rungs = if part.has_video() {
        plan.video.as_slice()
    } else {
        &[]
    };
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-y",
        "-loglevel",
        "level+info",
        "-nostats",
        "-progress",
        "pipe:1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(probe::untrusted_input_args(Some(source.demuxer())));
    if let EncodePart::VideoChunk { start_seconds, .. } = part {
        // Before -i: the demuxer seeks, and frames before the start are
        // decoded and dropped (ffmpeg's accurate seek), so the chunk's first
        // frame is the source's frame at the segment boundary.
        args.push("-ss".to_string());
        args.push(format!("{start_seconds:.6}"));
    }
    args.push("-i".to_string());
    args.push(probe::input_url(source_path));

    let push = |args: &mut Vec<String>, items: &[&str]| {
        args.extend(items.iter().map(|item| item.to_string()));
    };

    let video = source
        .video
        .as_ref()
        .filter(|_| !plan.video.is_empty() && (!rungs.is_empty() || thumbnails.is_some()));
    if let (Some(video), Some(frame_rate), Some(_)) = (video, plan.frame_rate, plan.gop_frames) {
        let mut graph = format!("[0:{}]", video.index);
        if video.interlaced {
            // Only frames flagged interlaced are touched.
            graph.push_str("yadif=mode=send_frame:parity=auto:deint=interlaced,");
        }
        if video.hdr {
            // PQ/HLG to BT.709 SDR, so 8-bit players show sane colours.
            graph.push_str(
                "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
                 tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,",
            );
        }
        // Constant frame rate for variable-frame-rate sources, and the
        // same frames in every branch.
        let branches = rungs.len() + usize::from(thumbnails.is_some()) + usize::from(poster_here);
        graph.push_str(&format!("fps={frame_rate},"));
        if let EncodePart::VideoChunk {
            frames: Some(frames),
            ..
        } = part
        {
            // A chunk's own frames and no more: the thumbnail branches
            // would otherwise pick frames of the chunks after it and keep
            // the whole rest of the source decoding.
            graph.push_str(&format!("trim=end_frame={frames},"));
        }
        graph.push_str(&format!("split={branches}"));
        for index in 0..rungs.len() {
            graph.push_str(&format!("[s{index}]"));
        }
        if thumbnails.is_some() {
            graph.push_str("[sprite_in]");
        }
        if poster_here {
            graph.push_str("[poster_in]");
        }
        for (index, rung) in rungs.iter().enumerate() {
            // format=yuv420p turns 10-bit and 4:2:2/4:4:4 sources into what
            // every browser decodes; setsar=1 keeps pixels square.
            graph.push_str(&format!(
                ";[s{index}]scale={}:{}:flags=bicubic,format=yuv420p,setsar=1[v{index}]",
                rung.width, rung.height
            ));
        }
        if let Some(thumbs) = thumbnails {
            let (poster_width, poster_height) = plan
                .video
                .last()
                .map(|rung| (rung.width, rung.height))
                .unwrap_or((thumbs.width, thumbs.height));
            // The poster branch selects exactly one frame (the first at or
            // after the poster time): with a plain `gte(t,T)` every later
            // frame was scaled to full size and thrown away, which cost 6%
            // of the whole encode (bench/ingest.sh).
            // The sprite takes the first frame of each interval: unlike
            // `fps=1/I`, which emits nothing for a clip shorter than half an
            // interval, this always has the first frame, and it keeps to the
            // interval's grid however long the video is.
            let ThumbnailPlan {
                interval_seconds: interval,
                width,
                height,
                columns,
                rows,
                poster_at_seconds: poster_at,
                ..
            } = thumbs;
            if let EncodePart::VideoChunk { start_seconds, .. } = part {
                // A chunk's frames are at t + start in the whole video. It
                // writes the first frame of every interval that begins in
                // it (the frame that crosses an interval's start), as a tile
                // of its own: the sprite is tiled when the chunks are
                // assembled. The small term keeps a frame that lands
                // exactly on an interval's start from being lost to
                // rounding.
                let frame = f64::from(frame_rate.den) / f64::from(frame_rate.num);
                // The first chunk's first frame is the first tile, as in the
                // whole encode, wherever the source's video starts.
                let first = if start_seconds <= 0.0 {
                    "isnan(prev_selected_t)+"
                } else {
                    ""
                };
                graph.push_str(&format!(
                    ";[sprite_in]select={first}gt(floor((t+{start_seconds:.6})/{interval}+0.000001)\\,\
                     floor((t+{start_seconds:.6}-{frame:.6})/{interval}+0.000001)),\
                     scale={width}:{height},setsar=1[sprite]",
                ));
                if poster_here {
                    graph.push_str(&format!(
                        ";[poster_in]select=isnan(prev_selected_t)*gte(t+{start_seconds:.6}\\,{poster_at:.3}),\
                         scale={poster_width}:{poster_height},setsar=1[poster]",
                    ));
                }
            } else {
                graph.push_str(&format!(
                    ";[sprite_in]select=isnan(prev_selected_t)+gt(floor(t/{interval})\\,floor(prev_selected_t/{interval})),\
                     scale={width}:{height},setsar=1,tile={columns}x{rows}[sprite]\
                     ;[poster_in]select=isnan(prev_selected_t)*gte(t\\,{poster_at:.3}),scale={poster_width}:{poster_height},setsar=1[poster]",
                ));
            }
        }
        push(&mut args, &["-filter_complex"]);
        args.push(graph);
        for index in 0..rungs.len() {
            push(&mut args, &["-map"]);
            args.push(format!("[v{index}]"));
        }
        map_audio(&mut args, source, plan, part);
    } else {
        map_audio(&mut args, source, plan, part);
    }
    if video.is_some() && !rungs.is_empty() {
        push(&mut args, &["-c:v", "libx264", "-preset"]);
        args.push(settings.preset.clone());
        push(&mut args, &["-profile:v", "high"]);
        for (index, rung) in rungs.iter().enumerate() {
            args.push(format!("-b:v:{index}"));
            args.push(rung.bitrate.to_string());
            match rung.codec {
                VideoCodec::H264 => {
                    args.push(format!("-maxrate:v:{index}"));
                    args.push(rung.maxrate.to_string());
                    args.push(format!("-bufsize:v:{index}"));
                    args.push(rung.bufsize.to_string());
                }
                // Given after the defaults above, which they override for
                // this stream. SVT-AV1 rate control is VBR at the target:
                // it takes no VBV cap, and the measured peak is what the
                // playlists announce either way.
                VideoCodec::Av1 => {
                    for (option, value) in [
                        ("-c:v", "libsvtav1".to_string()),
                        ("-preset:v", settings.av1_preset.to_string()),
                        ("-profile:v", "main".to_string()),
                    ] {
                        args.push(format!("{option}:{index}"));
                        args.push(value);
                    }
                }
            }
        }
        let gop = plan.gop_frames.unwrap_or(1).to_string();
        push(
            &mut args,
            &[
                "-g",
                &gop,
                "-keyint_min",
                &gop,
                "-sc_threshold",
                "0",
                "-flags:v",
                "+cgop",
            ],
        );
    }
    if part.has_audio_and_extras() && !plan.audio.is_empty() {
        for (index, rendition) in plan.audio.iter().enumerate() {
            args.push(format!("-c:a:{index}"));
            args.push(rendition.codec.encoder().to_string());
            args.push(format!("-b:a:{index}"));
            args.push(rendition.bitrate.to_string());
            args.push(format!("-ac:a:{index}"));
            args.push(rendition.channels.to_string());
        }
        push(&mut args, &["-ar"]);
        args.push(plan.audio[0].sample_rate.to_string());
        // Fill gaps and drop overlaps in the source's audio timestamps, so
        // audio stays in sync over the whole video.
        push(&mut args, &["-af", "aresample=async=1"]);
    }
    push(&mut args, &["-threads"]);
    args.push(settings.threads.to_string());
    if let EncodePart::VideoChunk {
        start_seconds,
        frames,
    } = part
    {
        if let Some(frames) = frames {
            push(&mut args, &["-frames:v"]);
            args.push(frames.to_string());
        }
        push(&mut args, &["-output_ts_offset"]);
        args.push(format!("{start_seconds:.6}"));
        push(&mut args, &["-format_options", "movflags=+frag_discont"]);
    }
    // One adaptation set per stream: the dash muxer refuses rungs whose
    // aspect ratios differ by even-size rounding (426x240 next to 1280x720)
    // in one set, and its MPD is discarded anyway.
    let streams = part_stream_count(plan, part);
    let adaptation_sets = (0..streams)
        .map(|index| format!("id={index},streams={index}"))
        .collect::<Vec<_>>()
        .join(" ");
    let adaptation_sets = adaptation_sets.as_str();
    push(
        &mut args,
        &[
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-f",
            "dash",
            "-seg_duration",
        ],
    );
    args.push(plan.segment_seconds.to_string());
    push(
        &mut args,
        &[
            "-use_template",
            "1",
            "-use_timeline",
            "0",
            "-init_seg_name",
            "$RepresentationID$/init.mp4",
            "-media_seg_name",
            "$RepresentationID$/$Number$.m4s",
            "-adaptation_sets",
            adaptation_sets,
        ],
    );
    args.push(out_dir.join(FFMPEG_MPD).display().to_string());
    let thumbnails_here = thumbnails.is_some() && video.is_some();
    if thumbnails_here && matches!(part, EncodePart::VideoChunk { .. }) {
        push(
            &mut args,
            &[
                "-map",
                "[sprite]",
                "-fps_mode",
                "passthrough",
                "-c:v",
                "png",
                "-f",
                "image2",
            ],
        );
        args.push(
            out_dir
                .join("thumbs")
                .join(CHUNK_TILES)
                .display()
                .to_string(),
        );
        if poster_here {
            push(
                &mut args,
                &[
                    "-map",
                    "[poster]",
                    "-frames:v",
                    "1",
                    "-q:v",
                    "3",
                    "-update",
                    "1",
                ],
            );
            args.push(
                out_dir
                    .join("thumbs")
                    .join("poster.jpg")
                    .display()
                    .to_string(),
            );
        }
    } else if thumbnails_here {
        for (label, file, quality) in [
            ("[sprite]", "sprite.jpg", "5"),
            ("[poster]", "poster.jpg", "3"),
        ] {
            push(
                &mut args,
                &[
                    "-map",
                    label,
                    "-frames:v",
                    "1",
                    "-q:v",
                    quality,
                    "-update",
                    "1",
                ],
            );
            args.push(out_dir.join("thumbs").join(file).display().to_string());
        }
    }
    let text_tracks = source
        .subtitles
        .iter()
        .filter(|track| track.is_text() && part.has_audio_and_extras());
    for (k, track) in text_tracks.enumerate() {
        args.push("-map".to_string());
        args.push(format!("0:{}", track.index));
        push(&mut args, &["-c:s", "webvtt", "-f", "webvtt"]);
        let path = out_dir.join(subtitle_dir(k)).join(SUBTITLE_EXTRACT);
        args.push(path.display().to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{AudioStream, VideoStream};
    use kinema_core::ladder::{FrameRate, LadderConfig, RungSpec, plan};

    fn check(actual: Vec<String>, expected: &str) {
        let actual = actual.join("\n");
        assert_eq!(actual, expected.trim(), "\nactual:\n{actual}\n");
    }

    fn source(interlaced: bool, hdr: bool, audio: bool) -> SourceInfo {
        SourceInfo {
            duration_seconds: 9.0,
            video: Some(VideoStream {
                index: 0,
                codec: "h264".into(),
                coded_width: 640,
                coded_height: 360,
                rotation: 0,
                frame_rate: FrameRate::new(25, 1),
                pixel_format: "yuv420p".into(),
                interlaced,
                hdr,
            }),
            audio: if audio {
                vec![AudioStream {
                    index: 2,
                    codec: "aac".into(),
                    channels: 1,
                    sample_rate: 44100,
                    language: "und".into(),
                    title: None,
                    default: true,
                    describes_video: false,
                    commentary: false,
                }]
            } else {
                Vec::new()
            },
            subtitles: Vec::new(),
            format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
        }
    }

    fn settings() -> EncoderSettings {
        EncoderSettings {
            preset: "veryfast".into(),
            threads: 2,
            av1_preset: 10,
        }
    }

    #[test]
    fn two_rungs_audio_and_thumbnails_in_one_command() {
        let source = source(false, false, true);
        let ladder = LadderConfig {
            rungs: vec![
                RungSpec {
                    height: 240,
                    bitrate: 300_000,
                },
                RungSpec {
                    height: 360,
                    bitrate: 700_000,
                },
            ],
            ..LadderConfig::default()
        };
        let plan = plan(&source.shape(), &ladder).unwrap();
        let thumbs = crate::thumbs::plan(9.0, 640, 360);
        check(
            ffmpeg_args(
                Path::new("/in/src.mp4"),
                &source,
                &plan,
                Some(&thumbs),
                &settings(),
                EncodePart::Whole,
                Path::new("/stage"),
            ),
            r"
-hide_banner
-nostdin
-y
-loglevel
level+info
-nostats
-progress
pipe:1
-protocol_whitelist
file
-format_whitelist
mov,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,mxf,wav,w64,aiff,mp3,flac,aac,dv,nut
-f
mov
-i
file:/in/src.mp4
-filter_complex
[0:0]fps=25,split=4[s0][s1][sprite_in][poster_in];[s0]scale=426:240:flags=bicubic,format=yuv420p,setsar=1[v0];[s1]scale=640:360:flags=bicubic,format=yuv420p,setsar=1[v1];[sprite_in]select=isnan(prev_selected_t)+gt(floor(t/2)\,floor(prev_selected_t/2)),scale=160:90,setsar=1,tile=5x1[sprite];[poster_in]select=isnan(prev_selected_t)*gte(t\,0.900),scale=640:360,setsar=1[poster]
-map
[v0]
-map
[v1]
-map
0:2
-map
0:2
-c:v
libx264
-preset
veryfast
-profile:v
high
-b:v:0
300000
-maxrate:v:0
360000
-bufsize:v:0
300000
-b:v:1
700000
-maxrate:v:1
1050000
-bufsize:v:1
1400000
-g
100
-keyint_min
100
-sc_threshold
0
-flags:v
+cgop
-c:a:0
aac
-b:a:0
64000
-ac:a:0
2
-c:a:1
aac
-b:a:1
32000
-ac:a:1
2
-ar
48000
-af
aresample=async=1
-threads
2
-map_metadata
-1
-map_chapters
-1
-f
dash
-seg_duration
4
-use_template
1
-use_timeline
0
-init_seg_name
$RepresentationID$/init.mp4
-media_seg_name
$RepresentationID$/$Number$.m4s
-adaptation_sets
id=0,streams=0 id=1,streams=1 id=2,streams=2 id=3,streams=3
/stage/ffmpeg-dash.mpd
-map
[sprite]
-frames:v
1
-q:v
5
-update
1
/stage/thumbs/sprite.jpg
-map
[poster]
-frames:v
1
-q:v
3
-update
1
/stage/thumbs/poster.jpg
",
        );
    }

    #[test]
    fn text_subtitles_are_extra_outputs_of_the_same_run_and_bitmaps_are_not_mapped() {
        let mut source = source(false, false, true);
        let subtitle = |index: u32, codec: &str| crate::probe::SubtitleStream {
            index,
            codec: codec.into(),
            language: "en".into(),
            title: None,
            forced: false,
            hearing_impaired: false,
        };
        source.subtitles = vec![
            subtitle(3, "subrip"),
            subtitle(4, "hdmv_pgs_subtitle"),
            subtitle(5, "ass"),
        ];
        let plan = plan(&source.shape(), &LadderConfig::default()).unwrap();
        let args = ffmpeg_args(
            Path::new("in.mkv"),
            &source,
            &plan,
            None,
            &settings(),
            EncodePart::Whole,
            Path::new("out"),
        );
        let dash_output = args
            .iter()
            .position(|a| a == "out/ffmpeg-dash.mpd")
            .unwrap();
        check(
            args[dash_output + 1..].to_vec(),
            "
-map
0:3
-c:s
webvtt
-f
webvtt
out/sub0/source.vtt
-map
0:5
-c:s
webvtt
-f
webvtt
out/sub1/source.vtt
",
        );
        assert_eq!(args.iter().filter(|a| *a == "-i").count(), 1);
    }

    #[test]
    fn interlaced_hdr_silent_source_filters_before_the_split() {
        let source = source(true, true, false);
        let plan = plan(&source.shape(), &LadderConfig::default()).unwrap();
        let args = ffmpeg_args(
            Path::new("in.mkv"),
            &source,
            &plan,
            None,
            &settings(),
            EncodePart::Whole,
            Path::new("out"),
        );
        let graph = &args[args.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(graph.starts_with(
            "[0:0]yadif=mode=send_frame:parity=auto:deint=interlaced,zscale=t=linear:npl=100,"
        ));
        assert!(graph.contains("zscale=t=bt709:m=bt709:r=tv,fps=25,split=3[s0][s1][s2];"));
        assert!(!args.iter().any(|a| a == "-c:a" || a.contains("sprite")));
        assert!(args.contains(&"id=0,streams=0 id=1,streams=1 id=2,streams=2".to_string()));
    }

    #[test]
    fn audio_only_source_maps_its_first_audio_stream() {
        let mut source = source(false, false, true);
        source.video = None;
        let plan = plan(&source.shape(), &LadderConfig::default()).unwrap();
        let args = ffmpeg_args(
            Path::new("in.m4a"),
            &source,
            &plan,
            None,
            &settings(),
            EncodePart::Whole,
            Path::new("out"),
        );
        assert!(!args.iter().any(|a| a == "-filter_complex" || a == "-c:v"));
        let joined = args.join(" ");
        assert!(
            joined.contains("-map 0:2 -c:a:0 aac -b:a:0 64000"),
            "{joined}"
        );
        assert!(
            joined.contains("-adaptation_sets id=0,streams=0 out/"),
            "{joined}"
        );
    }

    fn two_rungs() -> (SourceInfo, LadderPlan) {
        let source = source(false, false, true);
        let ladder = LadderConfig {
            rungs: vec![
                RungSpec {
                    height: 240,
                    bitrate: 300_000,
                },
                RungSpec {
                    height: 360,
                    bitrate: 700_000,
                },
            ],
            ..LadderConfig::default()
        };
        let plan = plan(&source.shape(), &ladder).unwrap();
        (source, plan)
    }

    #[test]
    fn video_chunk_seeks_counts_frames_and_keeps_the_whole_timeline() {
        let (source, plan) = two_rungs();
        let thumbs = crate::thumbs::plan(9.0, 640, 360);
        check(
            ffmpeg_args(
                Path::new("/in/src.mp4"),
                &source,
                &plan,
                Some(&thumbs),
                &settings(),
                EncodePart::VideoChunk {
                    start_seconds: 4.0,
                    frames: Some(100),
                },
                Path::new("/chunk"),
            ),
            r"
-hide_banner
-nostdin
-y
-loglevel
level+info
-nostats
-progress
pipe:1
-protocol_whitelist
file
-format_whitelist
mov,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,mxf,wav,w64,aiff,mp3,flac,aac,dv,nut
-f
mov
-ss
4.000000
-i
file:/in/src.mp4
-filter_complex
[0:0]fps=25,trim=end_frame=100,split=3[s0][s1][sprite_in];[s0]scale=426:240:flags=bicubic,format=yuv420p,setsar=1[v0];[s1]scale=640:360:flags=bicubic,format=yuv420p,setsar=1[v1];[sprite_in]select=gt(floor((t+4.000000)/2+0.000001)\,floor((t+4.000000-0.040000)/2+0.000001)),scale=160:90,setsar=1[sprite]
-map
[v0]
-map
[v1]
-c:v
libx264
-preset
veryfast
-profile:v
high
-b:v:0
300000
-maxrate:v:0
360000
-bufsize:v:0
300000
-b:v:1
700000
-maxrate:v:1
1050000
-bufsize:v:1
1400000
-g
100
-keyint_min
100
-sc_threshold
0
-flags:v
+cgop
-threads
2
-frames:v
100
-output_ts_offset
4.000000
-format_options
movflags=+frag_discont
-map_metadata
-1
-map_chapters
-1
-f
dash
-seg_duration
4
-use_template
1
-use_timeline
0
-init_seg_name
$RepresentationID$/init.mp4
-media_seg_name
$RepresentationID$/$Number$.m4s
-adaptation_sets
id=0,streams=0 id=1,streams=1
/chunk/ffmpeg-dash.mpd
-map
[sprite]
-fps_mode
passthrough
-c:v
png
-f
image2
/chunk/thumbs/tile-%05d.png
",
        );
        // The poster (0.9 s: frame 23) is the first chunk's alone.
        let first = ffmpeg_args(
            Path::new("/in/src.mp4"),
            &source,
            &plan,
            Some(&thumbs),
            &settings(),
            EncodePart::VideoChunk {
                start_seconds: 0.0,
                frames: Some(100),
            },
            Path::new("/chunk"),
        )
        .join(" ");
        assert!(
            first.contains(
                "split=4[s0][s1][sprite_in][poster_in];"
            ) && first.contains(
                ";[poster_in]select=isnan(prev_selected_t)*gte(t+0.000000\\,0.900),scale=640:360,setsar=1[poster]"
            ) && first.ends_with("-map [poster] -frames:v 1 -q:v 3 -update 1 /chunk/thumbs/poster.jpg"),
            "{first}"
        );
        // The last chunk runs to the end of the source.
        let args = ffmpeg_args(
            Path::new("/in/src.mp4"),
            &source,
            &plan,
            None,
            &settings(),
            EncodePart::VideoChunk {
                start_seconds: 8.0,
                frames: None,
            },
            Path::new("/chunk"),
        );
        assert!(!args.iter().any(|a| a == "-frames:v"));
        assert!(args.join(" ").contains("-output_ts_offset 8.000000"));
    }

    #[test]
    fn audio_part_has_audio_and_subtitles_and_decodes_no_video() {
        let (mut source, plan) = two_rungs();
        source.subtitles = vec![crate::probe::SubtitleStream {
            index: 3,
            codec: "subrip".into(),
            language: "en".into(),
            title: None,
            forced: false,
            hearing_impaired: false,
        }];
        let thumbs = crate::thumbs::plan(9.0, 640, 360);
        let args = ffmpeg_args(
            Path::new("/in/src.mp4"),
            &source,
            &plan,
            Some(&thumbs),
            &settings(),
            EncodePart::AudioAndExtras,
            Path::new("/audio"),
        );
        // The thumbnails are the video chunks': nothing here decodes the
        // picture.
        let start = args.iter().position(|a| a == "-i").unwrap() + 2;
        check(
            args[start..].to_vec(),
            r"
-map
0:2
-map
0:2
-c:a:0
aac
-b:a:0
64000
-ac:a:0
2
-c:a:1
aac
-b:a:1
32000
-ac:a:1
2
-ar
48000
-af
aresample=async=1
-threads
2
-map_metadata
-1
-map_chapters
-1
-f
dash
-seg_duration
4
-use_template
1
-use_timeline
0
-init_seg_name
$RepresentationID$/init.mp4
-media_seg_name
$RepresentationID$/$Number$.m4s
-adaptation_sets
id=0,streams=0 id=1,streams=1
/audio/ffmpeg-dash.mpd
-map
0:3
-c:s
webvtt
-f
webvtt
/audio/sub0/source.vtt
",
        );
        assert!(
            !args
                .iter()
                .any(|a| a == "-ss" || a == "-c:v" || a == "-filter_complex")
        );
    }
}
