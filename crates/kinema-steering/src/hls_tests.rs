use std::collections::{BTreeMap, BTreeSet};

use kinema_cluster::Role;

use super::*;
use crate::pathway::{BaseUrl, PathPrefix, PathwayId};

fn pathway(id: &str, url: &str, role: Role) -> Pathway {
    Pathway {
        id: PathwayId::parse(id).unwrap(),
        node_id: format!("node-{id}"),
        role,
        base_url: BaseUrl::new(url).unwrap(),
    }
}

fn three_pathways() -> Vec<Pathway> {
    vec![
        pathway("n00000000aa", "http://10.0.0.2:8080", Role::Edge),
        pathway("n00000000bb", "http://10.0.0.3:8080/", Role::Edge),
        pathway("n00000000cc", "https://origin.example:8443", Role::Origin),
    ]
}

/// A multivariant playlist as kinema publishes it: two rungs, one audio
/// group, one subtitle group, an I-frame playlist per rung.
const STORED: &str = include_str!("../tests/fixtures/stored-master.m3u8");

/// Written by hand from draft-pantos-hls-rfc8216bis §4.4.6: the steering
/// tag, then per pathway its renditions (own groups), variants and I-frame
/// variants, absolute under the signed prefix. `web/tests/steering.test.mjs`
/// parses the same file with hls.js's own parser.
const EXPECTED: &str = include_str!("../tests/fixtures/steered-master.m3u8");

fn rewrite(stored: &str, pathways: &[Pathway]) -> Result<String, SteeringError> {
    let prefix = PathPrefix::new("/s/T0k-_/v/clip/").unwrap();
    rewrite_master(
        stored,
        &Rewrite {
            prefix: &prefix,
            pathways,
            server_uri: "http://10.0.0.3:8080/steer/clip?session=P.S",
        },
    )
}

#[test]
fn master_for_three_pathways_matches_the_hand_written_playlist() {
    let actual = rewrite(STORED, &three_pathways()).unwrap();
    assert_eq!(actual, EXPECTED, "\nactual:\n{actual}");
}

/// The value of `name` in an attribute list, read independently of the
/// code under test: quoted values may hold commas.
fn attribute(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let equals = rest.find('=')?;
        let key = &rest[..equals];
        let after = &rest[equals + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let close = quoted.find('"')?;
            (&quoted[..close], &quoted[close + 1..])
        } else {
            let comma = after.find(',').unwrap_or(after.len());
            (&after[..comma], &after[comma..])
        };
        if key == name {
            return Some(value.to_owned());
        }
        rest = next.strip_prefix(',').unwrap_or(next);
    }
    None
}

/// Checks a rewritten playlist without the code under test: one steering
/// tag naming the first pathway; every URI absolute on its pathway under
/// the prefix; every variant's groups on its own pathway; the same set of
/// stable variant ids on every pathway. Returns that set's size and the
/// number of groups.
fn check_independently(text: &str, pathways: &[Pathway]) -> (usize, usize) {
    let base = |id: &str| {
        let pathway = pathways.iter().find(|p| p.id.as_str() == id).unwrap();
        format!("{}/s/T0k-_/v/clip/", pathway.base_url.as_str())
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut stable_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, String> = BTreeMap::new();
    let mut steering = 0;
    for (index, line) in lines.iter().enumerate() {
        if let Some(list) = line.strip_prefix("#EXT-X-CONTENT-STEERING:") {
            steering += 1;
            assert_eq!(
                attribute(list, "PATHWAY-ID").unwrap(),
                pathways[0].id.as_str()
            );
        } else if let Some(list) = line.strip_prefix("#EXT-X-MEDIA:") {
            let group = attribute(list, "GROUP-ID").unwrap();
            let uri = attribute(list, "URI").unwrap();
            let pathway = group.rsplit('-').next().unwrap().to_owned();
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            assert!(attribute(list, "STABLE-RENDITION-ID").is_some(), "{line}");
            groups.insert(group, pathway);
        } else if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let pathway = attribute(list, "PATHWAY-ID").unwrap();
            let uri = lines[index + 1];
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            for reference in ["AUDIO", "SUBTITLES"] {
                if let Some(group) = attribute(list, reference) {
                    assert_eq!(groups.get(&group), Some(&pathway), "{group} on {pathway}");
                }
            }
            let fresh = stable_ids
                .entry(pathway)
                .or_default()
                .insert(attribute(list, "STABLE-VARIANT-ID").unwrap());
            assert!(fresh, "a stable variant id twice on one pathway: {line}");
        } else if let Some(list) = line.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:") {
            let pathway = attribute(list, "PATHWAY-ID").unwrap();
            let uri = attribute(list, "URI").unwrap();
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            let fresh = stable_ids
                .entry(pathway)
                .or_default()
                .insert(attribute(list, "STABLE-VARIANT-ID").unwrap());
            assert!(fresh, "a stable variant id twice on one pathway: {line}");
        } else if !line.starts_with('#') {
            assert!(line.starts_with("http"), "relative URI left: {line}");
        }
    }
    assert_eq!(steering, 1);
    assert_eq!(stable_ids.len(), pathways.len(), "{stable_ids:?}");
    let sets: Vec<&BTreeSet<String>> = stable_ids.values().collect();
    assert!(sets.iter().all(|set| *set == sets[0]), "{stable_ids:?}");
    (sets[0].len(), groups.len())
}

#[test]
fn rewritten_master_passes_an_independent_check() {
    let pathways = three_pathways();
    let text = rewrite(STORED, &pathways).unwrap();
    // Two rungs and their two I-frame variants; audio and subtitles × 3.
    assert_eq!(check_independently(&text, &pathways), (4, 6));
}

/// kinema's full audio layout (kinema-media's own expected playlist): two
/// languages, a thin group for the lowest rung, a 5.1 group with variants
/// of its own reusing the video URIs, and an audio-only variant.
const STORED_AUDIO_LAYOUT: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"g7/a64/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"g7/a64-1/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-thin\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"g7/a32/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-thin\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"g7/a32-1/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-ac3\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"6\",URI=\"g7/a384ac3-1/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=132000,AVERAGE-BANDWIDTH=132000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=256x144,FRAME-RATE=25.000,AUDIO=\"audio-thin\"
g7/v144/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=764000,AVERAGE-BANDWIDTH=764000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio\"
g7/v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=484000,AVERAGE-BANDWIDTH=484000,CODECS=\"avc1.64001e,ac-3\",RESOLUTION=256x144,FRAME-RATE=25.000,AUDIO=\"audio-ac3\"
g7/v144/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1084000,AVERAGE-BANDWIDTH=1084000,CODECS=\"avc1.64001e,ac-3\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio-ac3\"
g7/v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,AVERAGE-BANDWIDTH=64000,CODECS=\"mp4a.40.2\",AUDIO=\"audio\"
g7/a64/index.m3u8
";

#[test]
fn kinemas_audio_layout_rewrites_consistently_on_every_pathway() {
    let pathways = &three_pathways()[..2];
    let text = rewrite(STORED_AUDIO_LAYOUT, pathways).unwrap();
    // Five variants, three groups, on each of two pathways.
    assert_eq!(check_independently(&text, pathways), (5, 6));
    // The 5.1 variants share URIs with the stereo ones but not stable ids.
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
        .take(5)
        .map(|l| attribute(l, "STABLE-VARIANT-ID").unwrap())
        .collect();
    assert_eq!(ids, ["v144", "v360", "v144.2", "v360.2", "a64"]);
}

#[test]
fn variants_sharing_a_uri_get_distinct_stable_ids_and_given_ids_are_kept() {
    let stored = "#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"audio\"
g1/v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2,AUDIO=\"audio-ac3\"
g1/v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3,STABLE-VARIANT-ID=\"mine\"
g1/v720/index.m3u8
";
    let pathways = &three_pathways()[..1];
    let text = rewrite(stored, pathways).unwrap();
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
        .map(|l| attribute(l, "STABLE-VARIANT-ID").unwrap())
        .collect();
    assert_eq!(ids, ["v360", "v360.2", "mine"]);
}

#[test]
fn an_old_steering_tag_is_replaced_and_other_lines_are_kept() {
    let stored = "#EXTM3U
#EXT-X-CONTENT-STEERING:SERVER-URI=\"/old\"
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",VALUE=\"Clip\"
#EXT-X-STREAM-INF:BANDWIDTH=1
v/index.m3u8
## a comment
#EXT-X-START:TIME-OFFSET=5
";
    let pathways = &three_pathways()[..1];
    let text = rewrite(stored, pathways).unwrap();
    assert_eq!(
        text,
        "#EXTM3U
#EXT-X-SESSION-DATA:DATA-ID=\"com.example.title\",VALUE=\"Clip\"
#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://10.0.0.3:8080/steer/clip?session=P.S\",PATHWAY-ID=\"n00000000aa\"
#EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"n00000000aa\",STABLE-VARIANT-ID=\"v\"
http://10.0.0.2:8080/s/T0k-_/v/clip/v/index.m3u8
## a comment
#EXT-X-START:TIME-OFFSET=5
"
    );
}

#[test]
fn playlists_that_cannot_be_rewritten_are_refused_with_the_reason() {
    let pathways = three_pathways();
    let refused = |stored: &str, expected: &str| {
        let error = rewrite(stored, &pathways).unwrap_err().to_string();
        assert!(error.contains(expected), "{stored:?}: {error}");
    };
    refused("not a playlist", "#EXTM3U");
    refused("#EXTM3U\n#EXT-X-VERSION:7\n", "no variant");
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
        "not followed by its URI",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-ENDLIST\nv.m3u8\n",
        "not followed by its URI",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://elsewhere/v.m3u8\n",
        "not relative",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/v/x/v.m3u8\n",
        "not relative",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a\n",
        "malformed attribute",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,\nv.m3u8\n",
        "malformed attribute",
    );
    refused(
        "#EXTM3U\n#EXT-X-STREAM-INF:bandwidth=1\nv.m3u8\n",
        "malformed attribute",
    );
    let huge = format!("#EXTM3U\n{}", "#".repeat(MAX_PLAYLIST_LEN));
    refused(&huge, "larger than");
    let many = format!(
        "#EXTM3U\n{}",
        "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n".repeat(MAX_ENTRIES + 1)
    );
    refused(&many, "more than 512");
    let prefix = PathPrefix::new("/v/clip/").unwrap();
    let no_pathway = Rewrite {
        prefix: &prefix,
        pathways: &[],
        server_uri: "/steer/clip",
    };
    assert!(rewrite_master(STORED, &no_pathway).is_err());
    let quote = Rewrite {
        prefix: &prefix,
        pathways: &pathways,
        server_uri: "/steer/\"clip",
    };
    assert!(rewrite_master(STORED, &quote).is_err());
}

#[test]
fn attribute_lists_keep_quoted_commas_and_order() {
    let list = Attributes::parse("A=1,B=\"x,y\",C=NONE").unwrap();
    assert_eq!(list.get("B"), Some("\"x,y\""));
    assert_eq!(list.quoted("B"), Some("x,y"));
    assert_eq!(list.quoted("C"), None);
    let mut list = list;
    list.set("A", "2".into());
    list.set("D", "\"z\"".into());
    assert_eq!(list.render(), "A=2,B=\"x,y\",C=NONE,D=\"z\"");
    assert!(Attributes::parse("A").is_err());
    assert!(Attributes::parse("=1").is_err());
    assert!(Attributes::parse("A=\"1\"B=2").is_err());
    assert!(Attributes::parse(&"A=1,".repeat(70)).is_err());
}
