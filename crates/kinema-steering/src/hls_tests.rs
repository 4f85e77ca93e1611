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

#[test]
fn rewritten_master_passes_an_independent_check() {
    let pathways = three_pathways();
    let text = rewrite(STORED, &pathways).unwrap();
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
            assert_eq!(attribute(list, "PATHWAY-ID").unwrap(), "n00000000aa");
        } else if let Some(list) = line.strip_prefix("#EXT-X-MEDIA:") {
            let group = attribute(list, "GROUP-ID").unwrap();
            let uri = attribute(list, "URI").unwrap();
            let pathway = group.rsplit('-').next().unwrap().to_owned();
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            groups.insert(group, pathway);
        } else if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let pathway = attribute(list, "PATHWAY-ID").unwrap();
            let uri = lines[index + 1];
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            for reference in ["AUDIO", "SUBTITLES"] {
                let group = attribute(list, reference).unwrap();
                assert_eq!(groups.get(&group), Some(&pathway), "{group} on {pathway}");
            }
            stable_ids
                .entry(pathway)
                .or_default()
                .insert(attribute(list, "STABLE-VARIANT-ID").unwrap());
        } else if let Some(list) = line.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:") {
            let pathway = attribute(list, "PATHWAY-ID").unwrap();
            let uri = attribute(list, "URI").unwrap();
            assert!(uri.starts_with(&base(&pathway)), "{uri} not on {pathway}");
            stable_ids
                .entry(pathway)
                .or_default()
                .insert(attribute(list, "STABLE-VARIANT-ID").unwrap());
        } else if !line.starts_with('#') {
            assert!(line.starts_with("http"), "relative URI left: {line}");
        }
    }
    assert_eq!(steering, 1);
    assert_eq!(stable_ids.len(), 3, "{stable_ids:?}");
    let sets: Vec<&BTreeSet<String>> = stable_ids.values().collect();
    assert!(sets.iter().all(|set| *set == sets[0]), "{stable_ids:?}");
    assert_eq!(sets[0].len(), 4);
    assert_eq!(groups.len(), 6);
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
