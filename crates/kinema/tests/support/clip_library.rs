//! A library holding a small video for tests of routing and steering: a
//! master, an MPD, one rendition with an init file and two segments
//! (bytes that stand for media; nothing in these tests decodes them).

use std::path::Path;

use kinema_core::{AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind};

/// The stored multivariant playlist, as every test expects it back.
pub const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
    #EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=620000,RESOLUTION=320x180,CODECS=\"avc1.42c00c\"\n\
    v180/index.m3u8\n";
/// Its generation: `/v/{id}/g{GENERATION}/…` names its files forever.
pub const GENERATION: u64 = 1_700_000_000_000;

/// Publishes the video as `id` with `access` to the library directory
/// `library`, assembled in `staging` (a fresh directory on the same file
/// system).
pub async fn publish(library: &Path, staging: &Path, id: &str, access: AccessPolicy) {
    std::fs::create_dir_all(staging.join("v180")).unwrap();
    std::fs::write(staging.join("master.m3u8"), MASTER).unwrap();
    std::fs::write(
        staging.join("manifest.mpd"),
        "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" \
         mediaPresentationDuration=\"PT2S\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\">\
         <Period><AdaptationSet mimeType=\"video/mp4\"><Representation id=\"v180\" bandwidth=\"700000\">\
         <SegmentTemplate initialization=\"v180/init.mp4\" media=\"v180/$Number$.m4s\" duration=\"1\" startNumber=\"1\"/>\
         </Representation></AdaptationSet></Period></MPD>\n",
    )
    .unwrap();
    std::fs::write(
        staging.join("v180/index.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:1\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000,\n1.m4s\n#EXTINF:1.000,\n2.m4s\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    std::fs::write(staging.join("v180/init.mp4"), vec![1u8; 800]).unwrap();
    for n in 1..=2u8 {
        std::fs::write(staging.join(format!("v180/{n}.m4s")), vec![n; 90_000]).unwrap();
    }
    let store = kinema_store::open(&kinema_store::StoreConfig::directory(library))
        .await
        .unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: kinema_core::VideoId::new(id).unwrap(),
        generation: GENERATION,
        title: "Steered clip".into(),
        duration_seconds: 2.0,
        segment_duration_seconds: 1.0,
        published_at_unix: 1_700_000_000,
        access,
        renditions: vec![Rendition {
            id: "v180".into(),
            kind: RenditionKind::Video,
            codecs: "avc1.42c00c".into(),
            width: Some(320),
            height: Some(180),
            frame_rate: Some(25.0),
            bitrate: 620_000,
            peak_bitrate: 700_000,
            segments: 2,
        }],
        files: kinema_store::describe_files(staging).await.unwrap(),
    };
    store.publish(&manifest, staging).await.unwrap();
}
