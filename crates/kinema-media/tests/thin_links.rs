//! The thinnest links: with the default ladder, the lowest video variant
//! (with the audio it carries) announces at most 200 kbit/s, and that figure
//! is honest: no segment pair needs more.

mod support;

use kinema_media::IngestConfig;
use support::{Library, fixture};

/// 12 s of moving test pattern with noise, 640x360, with sound: enough
/// motion that a starved encoder would overshoot.
fn moving_clip() -> std::path::PathBuf {
    fixture(
        "moving-360p.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25:d=12,noise=alls=20:allf=t",
            "-f",
            "lavfi",
            "-i",
            "sine=f=523:d=12",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    )
}

fn attribute(line: &str, name: &str) -> String {
    let attributes = line.split_once(':').map_or(line, |(_, rest)| rest);
    attributes
        .split(',')
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
        .trim_matches('"')
        .to_string()
}

#[tokio::test]
async fn lowest_variant_fits_a_250_kbit_link() {
    let library = Library::new();
    let config = IngestConfig {
        preset: "ultrafast".into(),
        threads: 1,
        ..IngestConfig::default()
    };
    let manifest = library
        .ingest(&moving_clip(), "thin", &config)
        .await
        .unwrap();
    let dir = library.video_dir("thin");
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let lines: Vec<&str> = master.lines().collect();
    let (index, lowest) = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("#EXT-X-STREAM-INF") && line.contains("RESOLUTION="))
        .min_by_key(|(_, line)| attribute(line, "BANDWIDTH").parse::<u64>().unwrap())
        .unwrap();
    let bandwidth: u64 = attribute(lowest, "BANDWIDTH").parse().unwrap();
    assert!(bandwidth <= 200_000, "{master}");
    assert_eq!(
        lines[index + 1],
        format!("g{}/v144/index.m3u8", manifest.generation),
        "{master}"
    );
    assert_eq!(attribute(lowest, "AUDIO"), "audio-thin");
    let sizes = support::stream_fields(&dir.join("v144/init.mp4"), "v:0", "width,height");
    assert_eq!(sizes, "width=256\nheight=144\n");
    let audio_rate = support::stream_fields(&dir.join("a32/init.mp4"), "a:0", "channels");
    assert_eq!(audio_rate, "channels=2\n");

    // Every segment's video and audio together, at its real duration,
    // within the announced BANDWIDTH.
    let durations = support::extinf(&dir.join("v144/index.m3u8"));
    for (number, seconds) in durations.iter().enumerate() {
        let bytes: u64 = ["v144", "a32"]
            .iter()
            .map(|rendition| {
                std::fs::metadata(dir.join(rendition).join(format!("{}.m4s", number + 1)))
                    .unwrap()
                    .len()
            })
            .sum();
        let bits_per_second = (bytes * 8) as f64 / seconds;
        assert!(
            bits_per_second <= bandwidth as f64,
            "segment {}: {bits_per_second:.0} bit/s over BANDWIDTH {bandwidth}",
            number + 1
        );
    }
}
