//! Tests of the MPD reader: MPDs as kinema and ffmpeg write them, `BaseURL`
//! and template resolution, durations, timelines, the set dash.js would
//! choose, and malformed or unsupported MPDs refused with clear errors.

use super::duration::{SECONDS_IN_MONTH, SECONDS_IN_YEAR};
use super::*;
use crate::hls::ByteRange;
use crate::presentation::Track;

/// Found by fuzzing: a video bandwidth near u64::MAX plus the audio's
/// overflowed (a panic in debug builds) while the ladder was summed.
#[test]
fn bandwidths_near_the_top_of_u64_saturate_instead_of_overflowing() {
    let mpd = r#"<MPD mediaPresentationDuration="PT4S"><Period>
  <SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
  <AdaptationSet contentType="video"><Representation id="v" bandwidth="18446744073709551615"/></AdaptationSet>
  <AdaptationSet contentType="audio"><Representation id="a" bandwidth="64000"/></AdaptationSet>
</Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/v/x/manifest.mpd")).unwrap();
    assert_eq!(presentation.renditions[0].bandwidth, u64::MAX);
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn track(presentation: &Presentation, rung: usize) -> &Track {
    presentation.renditions[rung].media.loaded().unwrap()
}

/// Checks every segment of `track` as (URI, duration rounded to the
/// microsecond), in order.
#[track_caller]
fn assert_segments(track: &Track, expected: &[(&str, f64)]) {
    let segments: Vec<(String, f64)> = (0..track.len())
        .map(|index| {
            let segment = track.segment(index).unwrap();
            (segment.uri, (segment.duration_seconds * 1e6).round() / 1e6)
        })
        .collect();
    let expected: Vec<(String, f64)> = expected
        .iter()
        .map(|(uri, seconds)| (uri.to_string(), *seconds))
        .collect();
    assert_eq!(segments, expected);
}

fn error(text: &str) -> String {
    parse(text, &url("http://127.0.0.1/v/clip/manifest.mpd"))
        .unwrap_err()
        .to_string()
}

/// What kinema-media's `dash::mpd` writes (its snapshot test, with a
/// second video rung).
const KINEMA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT9.000S" maxSegmentDuration="PT5S" minBufferTime="PT5S">
  <Period id="0" start="PT0S">
<AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="1280" maxHeight="720">
  <Representation id="v720" codecs="avc1.64001f" bandwidth="2500000" width="1280" height="720" sar="1:1" frameRate="25">
    <SegmentTemplate timescale="1000" initialization="v720/init.mp4" media="v720/$Number$.m4s" startNumber="1">
      <SegmentTimeline>
        <S t="0" d="4000" r="1"/>
        <S d="1000"/>
      </SegmentTimeline>
    </SegmentTemplate>
  </Representation>
  <Representation id="v360" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1" frameRate="25">
    <SegmentTemplate timescale="1000" initialization="v360/init.mp4" media="v360/$Number$.m4s" startNumber="1">
      <SegmentTimeline>
        <S t="0" d="4000" r="1"/>
        <S d="1000"/>
      </SegmentTimeline>
    </SegmentTemplate>
  </Representation>
</AdaptationSet>
<AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">
  <Representation id="a64" codecs="mp4a.40.2" bandwidth="64338" audioSamplingRate="48000">
    <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
    <SegmentTemplate timescale="1000" initialization="a64/init.mp4" media="a64/$Number$.m4s" startNumber="1">
      <SegmentTimeline>
        <S t="0" d="4021"/>
        <S d="3979"/>
        <S d="1000"/>
      </SegmentTimeline>
    </SegmentTemplate>
  </Representation>
</AdaptationSet>
  </Period>
</MPD>
"#;

#[test]
fn reads_the_mpd_kinema_writes() {
    let presentation = parse(KINEMA, &url("http://127.0.0.1:8080/v/clip/manifest.mpd")).unwrap();
    assert_eq!(presentation.format, Format::Dash);
    assert_eq!(presentation.duration_seconds, Some(9.0));
    let ids: Vec<&str> = presentation
        .renditions
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, ["v360", "v720"], "ascending by bandwidth");
    // Video plus the audio played beside it.
    assert_eq!(presentation.renditions[0].bandwidth, 800_000 + 64_338);
    assert_eq!(presentation.renditions[1].resolution, Some((1280, 720)));
    let low = track(&presentation, 0);
    assert_eq!(
        low.base.as_str(),
        "http://127.0.0.1:8080/v/clip/manifest.mpd"
    );
    assert_eq!(low.init.as_ref().unwrap().uri, "v360/init.mp4");
    assert_segments(
        low,
        &[
            ("v360/1.m4s", 4.0),
            ("v360/2.m4s", 4.0),
            ("v360/3.m4s", 1.0),
        ],
    );
    assert_eq!(low.duration_seconds(), 9.0);
    assert_eq!(presentation.audio.len(), 1);
    assert!(presentation.renditions.iter().all(|r| r.audio == Some(0)));
    let audio = presentation.audio[0].loaded().unwrap();
    assert_eq!(audio.init.as_ref().unwrap().uri, "a64/init.mp4");
    assert_segments(
        audio,
        &[
            ("a64/1.m4s", 4.021),
            ("a64/2.m4s", 3.979),
            ("a64/3.m4s", 1.0),
        ],
    );
}

/// What ffmpeg 5.1 `-f dash` writes around the one Period of a 5 s
/// clip: the same in each of its modes, so only the Period is spelled
/// out per fixture.
macro_rules! ffmpeg_mpd {
    ($period:literal) => {
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
	xmlns="urn:mpeg:dash:schema:mpd:2011"
	xmlns:xlink="http://www.w3.org/1999/xlink"
	xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 http://standards.iso.org/ittf/PubliclyAvailableStandards/MPEG-DASH_schema_files/DASH-MPD.xsd"
	profiles="urn:mpeg:dash:profile:isoff-live:2011"
	type="static"
	mediaPresentationDuration="PT5.0S"
	maxSegmentDuration="PT2.0S"
	minBufferTime="PT4.0S">
	<ProgramInformation>
	</ProgramInformation>
	<ServiceDescription id="0">
	</ServiceDescription>
	<Period id="0" start="PT0.0S">
"#,
            $period,
            "\t</Period>\n</MPD>\n"
        )
    };
}

/// The video segments both ffmpeg MPDs describe, with a timeline or
/// with a duration: 5 s in 2 s segments, the third cut short where
/// the period ends.
const FFMPEG_VIDEO_SEGMENTS: [(&str, f64); 3] = [
    ("chunk-stream0-00001.m4s", 2.0),
    ("chunk-stream0-00002.m4s", 2.0),
    ("chunk-stream0-00003.m4s", 1.0),
];

/// ffmpeg 5.1 `-f dash -seg_duration 2` of a 5 s clip, two video
/// streams and one audio (its default: one AdaptationSet per stream).
const FFMPEG_TIMELINE: &str = ffmpeg_mpd!(
    r#"		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="320" maxHeight="180" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c00d" bandwidth="200000" width="320" height="180" sar="1:1">
				<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="25600" r="1" />
						<S d="12800" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="160" maxHeight="90" par="16:9">
			<Representation id="1" mimeType="video/mp4" codecs="avc1.42c00c" bandwidth="100000" width="160" height="90" sar="1:1">
				<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="25600" r="1" />
						<S d="12800" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="2" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
			<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000" audioSamplingRate="44100">
				<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1" />
				<SegmentTemplate timescale="44100" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="88064" />
						<S d="89088" />
						<S d="43348" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
"#
);

#[test]
fn reads_ffmpegs_segment_timeline() {
    let presentation = parse(FFMPEG_TIMELINE, &url("http://127.0.0.1/d/manifest.mpd")).unwrap();
    // Two video AdaptationSets: dash.js plays the one with the higher
    // top bandwidth, a one-rung ladder.
    assert_eq!(presentation.renditions.len(), 1);
    let rung = &presentation.renditions[0];
    assert_eq!(rung.id, "0");
    assert_eq!(rung.bandwidth, 200_000 + 64_000);
    assert_eq!(rung.resolution, Some((320, 180)));
    let video = track(&presentation, 0);
    assert_eq!(video.init.as_ref().unwrap().uri, "init-stream0.m4s");
    assert_segments(video, &FFMPEG_VIDEO_SEGMENTS);
    let audio = presentation.audio[0].loaded().unwrap();
    assert_segments(
        audio,
        &[
            ("chunk-stream2-00001.m4s", 1.996916),
            ("chunk-stream2-00002.m4s", 2.020136),
            ("chunk-stream2-00003.m4s", 0.982948),
        ],
    );
}

/// ffmpeg 5.1 `-f dash -seg_duration 2 -use_timeline 0` of a 5 s clip.
const FFMPEG_DURATION: &str = ffmpeg_mpd!(
    r#"		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="320" maxHeight="180" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c00d" bandwidth="200000" width="320" height="180" sar="1:1">
				<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
			<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000" audioSamplingRate="44100">
				<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1" />
				<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
"#
);

#[test]
fn reads_ffmpegs_segment_duration() {
    let presentation = parse(FFMPEG_DURATION, &url("http://127.0.0.1/d/manifest.mpd")).unwrap();
    let video = track(&presentation, 0);
    // A duration gives no count: the period's end cuts the third short.
    assert_segments(video, &FFMPEG_VIDEO_SEGMENTS);
    assert_eq!(video.segment(3), None);
    assert_eq!(video.duration_seconds(), 5.0);
    let audio = presentation.audio[0].loaded().unwrap();
    assert_eq!(audio.segment(2).unwrap().uri, "chunk-stream1-00003.m4s");
}

#[test]
fn base_urls_resolve_level_by_level_like_rfc_3986() {
    let mpd = r#"<MPD type="static" mediaPresentationDuration="PT4S">
  <BaseURL>http://127.0.0.2/root/</BaseURL>
  <Period>
<BaseURL>p1/</BaseURL>
<AdaptationSet mimeType="video/mp4">
  <BaseURL>../video/</BaseURL>
  <SegmentTemplate media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.m4s" duration="2"/>
  <Representation id="hd" bandwidth="3000000">
    <BaseURL>720/?token=t</BaseURL>
  </Representation>
  <Representation id="sd" bandwidth="800000">
    <BaseURL>/elsewhere/</BaseURL>
  </Representation>
  <Representation id="same" bandwidth="100000"/>
</AdaptationSet>
  </Period>
</MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/v/clip/manifest.mpd")).unwrap();
    let base = |rung: usize| track(&presentation, rung).base.to_string();
    assert_eq!(base(0), "http://127.0.0.2/root/video/");
    assert_eq!(base(1), "http://127.0.0.2/elsewhere/");
    assert_eq!(base(2), "http://127.0.0.2/root/video/720/?token=t");
    // A segment reference resolves against its base (a relative
    // reference drops the base's query).
    let hd = track(&presentation, 2);
    let first = hd.base.join(&hd.segment(0).unwrap().uri).unwrap();
    assert_eq!(first.as_str(), "http://127.0.0.2/root/video/720/hd-1.m4s");

    // A relative MPD BaseURL resolves against the MPD's own URL.
    let mpd = r#"<MPD mediaPresentationDuration="PT2S"><BaseURL>media</BaseURL><Period>
  <AdaptationSet contentType="video"><Representation id="r" bandwidth="1">
<SegmentTemplate media="r/$Number$.m4s" duration="2"/>
  </Representation></AdaptationSet></Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/v/clip/manifest.mpd?x=1")).unwrap();
    assert_eq!(
        track(&presentation, 0).base.as_str(),
        "http://127.0.0.1/v/clip/media"
    );
}

#[test]
fn templates_format_numbers_times_and_bandwidths() {
    let render = |text: &str| {
        UrlTemplate::parse(text)
            .unwrap()
            .render("v 1", 42, 800_000, 90_000)
    };
    assert_eq!(render("$RepresentationID$/$Number$.m4s"), "v 1/42.m4s");
    assert_eq!(render("seg-$Number%05d$.m4s"), "seg-00042.m4s");
    assert_eq!(render("seg-$Number%01d$.m4s"), "seg-42.m4s");
    assert_eq!(
        render("$Bandwidth$/$Time%010d$.m4s"),
        "800000/0000090000.m4s"
    );
    assert_eq!(render("price$$-$Time$"), "price$-90000");
    assert_eq!(render("plain.mp4"), "plain.mp4");
    let error = |text: &str| UrlTemplate::parse(text).unwrap_err();
    assert!(error("seg-$Number.m4s").contains("never closed"));
    assert!(error("$SubNumber$.m4s").contains("$SubNumber$"));
    assert!(error("$Number%5d$.m4s").contains("%0[width]d"));
    assert!(error("$Number%05x$.m4s").contains("%0[width]d"));
    assert!(error("$RepresentationID%02d$").contains("no format tag"));
    assert!(error("$Number%0999d$").contains("wider"));
}

#[test]
fn iso_8601_durations() {
    let cases = [
        ("PT1M3.5S", 63.5),
        ("PT9.040S", 9.04),
        ("PT0S", 0.0),
        ("PT0H0M10.000S", 10.0),
        ("P1DT2H", 93_600.0),
        ("P0Y0M0DT0H1M0S", 60.0),
        ("PT2H", 7200.0),
        ("P1Y", SECONDS_IN_YEAR),
        ("P1M", SECONDS_IN_MONTH),
        ("PT1M", 60.0),
        (" PT5S ", 5.0),
    ];
    for (text, seconds) in cases {
        let parsed = parse_duration(text).unwrap();
        assert!((parsed - seconds).abs() < 1e-9, "{text}: {parsed}");
    }
    for (text, why) in [
        ("", "start with P"),
        ("5S", "start with P"),
        ("P", "no component"),
        ("PT", "T is not followed"),
        ("PT1.5", "no designator"),
        ("PT5S3M", "out of order"),
        ("P1W", "unknown"),
        ("-PT1S", "negative"),
        ("PT1..5S", "not a number"),
        ("P1H", "unknown or out of order"),
    ] {
        let error = parse_duration(text).unwrap_err();
        assert!(error.contains(why), "{text}: {error}");
    }
}

#[test]
fn timeline_repeats_to_the_next_start_or_the_period_end() {
    let mpd = r#"<MPD mediaPresentationDuration="PT10S"><Period>
  <AdaptationSet contentType="video">
<SegmentTemplate timescale="10" media="$Time$.m4s" presentationTimeOffset="100">
  <SegmentTimeline>
    <S t="100" d="20" r="-1"/>
    <S t="140" d="15"/>
    <S t="160" d="20" r="-1"/>
  </SegmentTimeline>
</SegmentTemplate>
<Representation id="v" bandwidth="1000"/>
  </AdaptationSet></Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
    // 100..140 in 2 s steps, 1.5 s at 140, a 0.5 s gap, then 2 s
    // segments from 160 to the period's end at 100 + 10 s × 10 = 200.
    assert_segments(
        track(&presentation, 0),
        &[
            ("100.m4s", 2.0),
            ("120.m4s", 2.0),
            ("140.m4s", 1.5),
            ("160.m4s", 2.0),
            ("180.m4s", 2.0),
        ],
    );
}

#[test]
fn the_set_dash_js_would_choose_is_played() {
    let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period>
  <SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
  <AdaptationSet contentType="video"><Representation id="big" bandwidth="9000000"/></AdaptationSet>
  <AdaptationSet contentType="video" selectionPriority="2">
<Representation id="a" bandwidth="300000"/><Representation id="b" bandwidth="600000"/>
  </AdaptationSet>
  <AdaptationSet contentType="text"><Representation id="subs" bandwidth="1"/></AdaptationSet>
  <AdaptationSet mimeType="audio/mp4">
<Representation id="a128" bandwidth="128000"/><Representation id="a64" bandwidth="64000"/>
  </AdaptationSet>
</Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
    let ladder: Vec<(&str, u64)> = presentation
        .renditions
        .iter()
        .map(|r| (r.id.as_str(), r.bandwidth))
        .collect();
    // selectionPriority first; the audio set's lowest Representation.
    assert_eq!(ladder, [("a", 364_000), ("b", 664_000)]);
    let audio = presentation.audio[0].loaded().unwrap();
    assert_eq!(audio.segment(1).unwrap().uri, "a64/2.m4s");

    // Audio only: the audio Representations are the ladder.
    let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period>
  <AdaptationSet codecs="mp4a.40.2"><SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
<Representation id="a128" bandwidth="128000"/><Representation id="a64" bandwidth="64000"/>
  </AdaptationSet></Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
    assert_eq!(presentation.renditions.len(), 2);
    assert!(presentation.audio.is_empty());
    assert_eq!(presentation.renditions[0].audio, None);
}

#[test]
fn initialization_element_with_a_range() {
    let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period><AdaptationSet contentType="video">
  <Representation id="v" bandwidth="1"><BaseURL>v.mp4</BaseURL>
<SegmentTemplate media="v-$Number$.m4s" duration="1"><Initialization range="0-999"/></SegmentTemplate>
  </Representation></AdaptationSet></Period></MPD>"#;
    let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
    let init = track(&presentation, 0).init.clone().unwrap();
    assert_eq!(init.uri, "");
    assert_eq!(
        init.range,
        Some(ByteRange {
            offset: 0,
            length: 1000
        })
    );
}

/// A minimal valid MPD with `representation` and `template` swapped in.
fn with(representation: &str, template: &str) -> String {
    format!(
        r#"<MPD mediaPresentationDuration="PT4S"><Period><AdaptationSet contentType="video">
<Representation {representation}>{template}</Representation></AdaptationSet></Period></MPD>"#
    )
}

/// [`with`] a valid Representation (`id="v" bandwidth="1"`) holding
/// `template`.
fn with_template(template: &str) -> String {
    with(r#"id="v" bandwidth="1""#, template)
}

#[test]
fn malformed_mpds_are_clear_errors() {
    let ok_template = r#"<SegmentTemplate media="$Number$.m4s" duration="2"/>"#;
    assert!(parse(&with_template(ok_template), &url("http://127.0.0.1/m.mpd")).is_ok());
    let cases: Vec<(String, &str)> = vec![
        ("<MPD><Period>".into(), "not well-formed XML"),
        ("<html/>".into(), "root element is <html>"),
        ("<MPD type=\"dynamic\"/>".into(), "live"),
        ("<MPD type=\"vod\"/>".into(), "neither static nor dynamic"),
        ("<MPD/>".into(), "no Period"),
        ("<MPD><Period/><Period/></MPD>".into(), "2 periods"),
        ("<MPD><Period/></MPD>".into(), "no AdaptationSet with video or audio"),
        (
            "<MPD mediaPresentationDuration=\"5 seconds\"/>".into(),
            "mediaPresentationDuration: \"5 seconds\" is not an ISO 8601 duration",
        ),
        (with(r#"id="v""#, ok_template), "line 2: Representation \"v\": has no bandwidth"),
        (with(r#"id="v" bandwidth="fast""#, ok_template), "bandwidth=\"fast\" is not a whole number"),
        (with(r#"bandwidth="1""#, ok_template), "has no id"),
        (with_template(""), "has no SegmentTemplate"),
        (
            with_template(r#"<SegmentBase indexRange="0-99"/>"#),
            "SegmentBase, which kinema bench does not play",
        ),
        (
            with_template(r#"<SegmentTemplate duration="2"/>"#),
            "has no media attribute",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"/>"#),
            "neither a SegmentTimeline nor a duration",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s" duration="2" timescale="0"/>"#),
            "timescale must be above 0",
        ),
        (
            with_template(r#"<SegmentTemplate media="all.m4s" duration="1"/>"#),
            "neither $Number$ nor $Time$",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s" initialization="$Number$.mp4" duration="1"/>"#),
            "may not use $Number$",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Nmber$.m4s" duration="1"/>"#),
            "$Nmber$ is not an identifier",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline/></SegmentTemplate>"#),
            "has no S elements",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="0"/></SegmentTimeline></SegmentTemplate>"#),
            "S: needs a duration d above 0",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="10" d="10"/><S t="5" d="10"/></SegmentTimeline></SegmentTemplate>"#),
            "starts before the previous segment ends (20)",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S d="10" r="-2"/></SegmentTimeline></SegmentTemplate>"#),
            "S: r=\"-2\" is not",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S d="1" r="5000000"/></SegmentTimeline></SegmentTemplate>"#),
            "more than 1000000 segments",
        ),
        (
            with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="18446744073709551615" d="10" r="1"/></SegmentTimeline></SegmentTemplate>"#),
            "overflows",
        ),
        (
            "<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"$Number$.m4s\" duration=\"2\"/></Representation></AdaptationSet></Period></MPD>".into(),
            "needs the period's length",
        ),
        (
            "<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"$Number$.m4s\"><SegmentTimeline><S d=\"1\" r=\"-1\"/></SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period></MPD>".into(),
            "whose length the MPD does not give",
        ),
        (
            "<MPD xmlns:xlink=\"http://www.w3.org/1999/xlink\"><Period xlink:href=\"http://127.0.0.1/p.xml\"/></MPD>".into(),
            "xlink:href",
        ),
    ];
    for (mpd, expected) in cases {
        let message = error(&mpd);
        assert!(
            message.contains(expected),
            "{mpd}\n→ {message}\n(expected {expected:?})"
        );
    }
}
