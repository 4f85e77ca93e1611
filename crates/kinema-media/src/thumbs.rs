//! Thumbnails: a poster, a sprite sheet of frames at a fixed interval, and
//! the WebVTT file that maps time ranges to regions of the sprite
//! (`sprite.jpg#xywh=x,y,w,h`), which players use for trickplay previews.
//!
//! The frames themselves come out of the same ffmpeg run as the renditions
//! (extra filter branches, so the source is decoded once); this module plans
//! their geometry and writes the VTT from that plan.

use std::fmt::Write;

/// Most thumbnails in one sprite sheet; longer videos space them further.
const MAX_THUMBNAILS: f64 = 100.0;
/// Thumbnails are spaced at least this far apart, seconds.
const MIN_INTERVAL_SECONDS: u32 = 2;
/// Width of one thumbnail (landscape) or its height (portrait), pixels.
const THUMBNAIL_LONG_SIDE: u32 = 160;
const SPRITE_COLUMNS: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct ThumbnailPlan {
    pub interval_seconds: u32,
    pub count: u32,
    pub columns: u32,
    pub rows: u32,
    pub width: u32,
    pub height: u32,
    /// The poster is the first frame at or after this time.
    pub poster_at_seconds: f64,
}

fn even(value: f64) -> u32 {
    ((value / 2.0).round() as u32 * 2).max(2)
}

/// Plans the sprite for a video of `duration_seconds` displayed at
/// `width`×`height`.
pub fn plan(duration_seconds: f64, width: u32, height: u32) -> ThumbnailPlan {
    let interval_seconds =
        ((duration_seconds / MAX_THUMBNAILS).ceil() as u32).max(MIN_INTERVAL_SECONDS);
    let count = ((duration_seconds / f64::from(interval_seconds)).ceil() as u32).max(1);
    let columns = count.min(SPRITE_COLUMNS);
    let rows = count.div_ceil(columns);
    let (thumb_width, thumb_height) = if width >= height {
        (
            THUMBNAIL_LONG_SIDE,
            even(f64::from(THUMBNAIL_LONG_SIDE) * f64::from(height) / f64::from(width)),
        )
    } else {
        (
            even(f64::from(THUMBNAIL_LONG_SIDE) * f64::from(width) / f64::from(height)),
            THUMBNAIL_LONG_SIDE,
        )
    };
    ThumbnailPlan {
        interval_seconds,
        count,
        columns,
        rows,
        width: thumb_width,
        height: thumb_height,
        // A tenth in: past a fade from black, and always inside the video.
        poster_at_seconds: duration_seconds * 0.1,
    }
}

fn timestamp(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// The WebVTT map from time ranges to sprite regions.
pub fn vtt(plan: &ThumbnailPlan, duration_seconds: f64, sprite_uri: &str) -> String {
    let mut out = String::from("WEBVTT\n");
    for index in 0..plan.count {
        let start = f64::from(index * plan.interval_seconds);
        let end = (f64::from((index + 1) * plan.interval_seconds)).min(duration_seconds);
        let x = index % plan.columns * plan.width;
        let y = index / plan.columns * plan.height;
        let _ = write!(
            out,
            "\n{} --> {}\n{sprite_uri}#xywh={x},{y},{},{}\n",
            timestamp(start),
            timestamp(end),
            plan.width,
            plan.height
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(actual: &str, expected: &str) {
        assert_eq!(
            actual, expected,
            "\nactual:\n{actual}\nexpected:\n{expected}"
        );
    }

    #[test]
    fn short_clip_sprite_and_vtt() {
        let plan = plan(9.0, 320, 180);
        assert_eq!(
            (plan.interval_seconds, plan.count, plan.columns, plan.rows),
            (2, 5, 5, 1)
        );
        assert_eq!((plan.width, plan.height), (160, 90));
        check(
            &vtt(&plan, 9.0, "sprite.jpg"),
            "WEBVTT

00:00:00.000 --> 00:00:02.000
sprite.jpg#xywh=0,0,160,90

00:00:02.000 --> 00:00:04.000
sprite.jpg#xywh=160,0,160,90

00:00:04.000 --> 00:00:06.000
sprite.jpg#xywh=320,0,160,90

00:00:06.000 --> 00:00:08.000
sprite.jpg#xywh=480,0,160,90

00:00:08.000 --> 00:00:09.000
sprite.jpg#xywh=640,0,160,90
",
        );
    }

    #[test]
    fn long_videos_wrap_rows_and_widen_the_interval() {
        let plan = plan(3600.0, 1080, 1920);
        assert_eq!((plan.interval_seconds, plan.count), (36, 100));
        assert_eq!((plan.columns, plan.rows), (10, 10));
        assert_eq!((plan.width, plan.height), (90, 160));
        let vtt = vtt(&plan, 3600.0, "sprite.jpg");
        assert!(vtt.contains("00:59:24.000 --> 01:00:00.000\nsprite.jpg#xywh=810,1440,90,160\n"));
        let plan = super::plan(0.5, 320, 180);
        assert_eq!((plan.count, plan.columns, plan.rows), (1, 1, 1));
    }
}
