//! How far an encode has got, read from what it has written.
//!
//! ffmpeg's own `-progress` report is no measure of work done: it prints
//! nothing until every output has produced its first frame, and the sprite
//! sheet's `tile` filter produces its one frame only at the end of the input,
//! so for the whole encode the report is silent. The segments are the work:
//! ffmpeg's DASH muxer writes each one as `N.m4s.tmp` and renames it to
//! `N.m4s` once it is complete, so the completed segments of the slowest
//! stream, times the segment duration, are the media time every rendition has
//! reached. Their bytes are the stall detector's evidence that the encoder is
//! still producing.
//!
//! Each poll looks only for the next segment number of each stream (one
//! `stat` per stream while nothing new appeared), so the cost of a poll and
//! the memory held do not grow with the length of the video.

use std::path::PathBuf;

/// What the encoder has written so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Written {
    /// Media seconds every stream has completed.
    pub media_seconds: f64,
    /// Bytes of all completed segments of all streams.
    pub bytes: u64,
}

/// Watches the stream directories of one encode.
#[derive(Debug)]
pub struct SegmentWatch {
    streams: Vec<StreamWatch>,
    segment_seconds: f64,
}

#[derive(Debug)]
struct StreamWatch {
    dir: PathBuf,
    /// Completed segments seen so far (`1.m4s` … `{completed}.m4s`).
    completed: u64,
    bytes: u64,
}

impl SegmentWatch {
    /// Watches `stream_dirs`, each receiving segments of `segment_seconds`.
    pub fn new(stream_dirs: Vec<PathBuf>, segment_seconds: f64) -> Self {
        Self {
            streams: stream_dirs
                .into_iter()
                .map(|dir| StreamWatch {
                    dir,
                    completed: 0,
                    bytes: 0,
                })
                .collect(),
            segment_seconds,
        }
    }

    /// Looks for segments completed since the last poll (blocking: a few
    /// `stat` calls; run it off the reactor).
    pub fn poll(&mut self) -> Written {
        for stream in &mut self.streams {
            loop {
                let next = stream.dir.join(format!("{}.m4s", stream.completed + 1));
                match std::fs::metadata(&next) {
                    Ok(metadata) => {
                        stream.completed += 1;
                        stream.bytes += metadata.len();
                    }
                    // Not there yet (or unreadable): the next poll looks again.
                    Err(_) => break,
                }
            }
        }
        let slowest = self
            .streams
            .iter()
            .map(|stream| stream.completed)
            .min()
            .unwrap_or(0);
        Written {
            media_seconds: slowest as f64 * self.segment_seconds,
            bytes: self.streams.iter().map(|stream| stream.bytes).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_segments_of_the_slowest_stream_are_the_media_time() {
        let root = tempfile::tempdir().unwrap();
        let video = root.path().join("0");
        let audio = root.path().join("1");
        std::fs::create_dir_all(&video).unwrap();
        std::fs::create_dir_all(&audio).unwrap();
        let mut watch = SegmentWatch::new(vec![video.clone(), audio.clone()], 4.0);
        assert_eq!(watch.poll(), Written::default());

        for number in 1..=3 {
            std::fs::write(video.join(format!("{number}.m4s")), [0u8; 100]).unwrap();
        }
        // A segment being written is not complete.
        std::fs::write(video.join("4.m4s.tmp"), [0u8; 50]).unwrap();
        std::fs::write(audio.join("1.m4s"), [0u8; 10]).unwrap();
        assert_eq!(
            watch.poll(),
            Written {
                media_seconds: 4.0,
                bytes: 310
            }
        );

        std::fs::write(audio.join("2.m4s"), [0u8; 10]).unwrap();
        std::fs::write(audio.join("3.m4s"), [0u8; 10]).unwrap();
        assert_eq!(
            watch.poll(),
            Written {
                media_seconds: 12.0,
                bytes: 330
            }
        );
    }
}
