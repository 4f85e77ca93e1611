use kinema_cluster::Role;

use super::*;
use crate::pathway::{BaseUrl, PathPrefix, Pathway, PathwayId};

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
        pathway("n00000000bb", "http://10.0.0.3:8080", Role::Edge),
        pathway("n00000000cc", "https://origin.example:8443", Role::Origin),
    ]
}

/// An MPD as kinema publishes it (shortened): an MPD-level BaseURL naming
/// the generation, SegmentTemplates relative to it, a subtitle
/// Representation with a BaseURL of its own.
const STORED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT8.000S" maxSegmentDuration="PT4S" minBufferTime="PT4S">
  <BaseURL>g5/</BaseURL>
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <Representation id="v360" codecs="avc1.64001e" bandwidth="500000">
        <SegmentTemplate timescale="1000" initialization="v360/init.mp4" media="v360/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="1"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="text" mimeType="text/vtt" lang="en">
      <Representation id="sub0" bandwidth="256">
        <BaseURL>sub0/sub.vtt</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

/// Written by hand from DASH-IF CTS 001: ContentSteering and one BaseURL
/// per pathway where the stored BaseURL was; `&` escaped; nothing else moved.
const EXPECTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT8.000S" maxSegmentDuration="PT4S" minBufferTime="PT4S">
  <ContentSteering defaultServiceLocation="n00000000aa" queryBeforeStart="true">http://10.0.0.3:8080/steer/clip?session=P.S&amp;proto=dash</ContentSteering>
  <BaseURL serviceLocation="n00000000aa">http://10.0.0.2:8080/s/T0k-_/v/clip/g5/</BaseURL>
  <BaseURL serviceLocation="n00000000bb">http://10.0.0.3:8080/s/T0k-_/v/clip/g5/</BaseURL>
  <BaseURL serviceLocation="n00000000cc">https://origin.example:8443/s/T0k-_/v/clip/g5/</BaseURL>
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <Representation id="v360" codecs="avc1.64001e" bandwidth="500000">
        <SegmentTemplate timescale="1000" initialization="v360/init.mp4" media="v360/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="1"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="text" mimeType="text/vtt" lang="en">
      <Representation id="sub0" bandwidth="256">
        <BaseURL>sub0/sub.vtt</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

fn rewrite(stored: &str, pathways: &[Pathway]) -> Result<String, SteeringError> {
    let prefix = PathPrefix::new("/s/T0k-_/v/clip/").unwrap();
    rewrite_mpd(
        stored,
        &Rewrite {
            prefix: &prefix,
            pathways,
            server_uri: "http://10.0.0.3:8080/steer/clip?session=P.S&proto=dash",
        },
    )
}

#[test]
fn mpd_for_three_pathways_matches_the_hand_written_mpd() {
    let actual = rewrite(STORED, &three_pathways()).unwrap();
    assert_eq!(actual, EXPECTED, "\nactual:\n{actual}");
}

#[test]
fn rewritten_mpd_parses_with_content_steering_and_a_base_url_per_pathway() {
    let text = rewrite(STORED, &three_pathways()).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let mpd = document.root_element();
    let steering: Vec<_> = mpd
        .children()
        .filter(|n| n.has_tag_name("ContentSteering"))
        .collect();
    assert_eq!(steering.len(), 1);
    assert_eq!(
        steering[0].attribute("defaultServiceLocation"),
        Some("n00000000aa")
    );
    assert_eq!(steering[0].attribute("queryBeforeStart"), Some("true"));
    assert_eq!(
        steering[0].text(),
        Some("http://10.0.0.3:8080/steer/clip?session=P.S&proto=dash")
    );
    let bases: Vec<(&str, &str)> = mpd
        .children()
        .filter(|n| n.has_tag_name("BaseURL"))
        .map(|n| (n.attribute("serviceLocation").unwrap(), n.text().unwrap()))
        .collect();
    assert_eq!(
        bases,
        [
            ("n00000000aa", "http://10.0.0.2:8080/s/T0k-_/v/clip/g5/"),
            ("n00000000bb", "http://10.0.0.3:8080/s/T0k-_/v/clip/g5/"),
            (
                "n00000000cc",
                "https://origin.example:8443/s/T0k-_/v/clip/g5/"
            ),
        ]
    );
    // Everything below the MPD level is untouched.
    let representations = document
        .descendants()
        .filter(|n| n.has_tag_name("Representation"))
        .count();
    assert_eq!(representations, 2);
}

#[test]
fn an_mpd_without_base_url_gets_the_request_directory_before_its_period() {
    let stored = "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\">\n\t<Period/>\n</MPD>";
    let text = rewrite(stored, &three_pathways()[1..2]).unwrap();
    assert_eq!(
        text,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\">\n\
         \t<ContentSteering defaultServiceLocation=\"n00000000bb\" queryBeforeStart=\"true\">http://10.0.0.3:8080/steer/clip?session=P.S&amp;proto=dash</ContentSteering>\n\
         \t<BaseURL serviceLocation=\"n00000000bb\">http://10.0.0.3:8080/s/T0k-_/v/clip/</BaseURL>\n\
         \t<Period/>\n</MPD>"
    );
}

#[test]
fn mpds_that_cannot_be_rewritten_are_refused_with_the_reason() {
    let pathways = three_pathways();
    let refused = |stored: &str, expected: &str| {
        let error = rewrite(stored, &pathways).unwrap_err().to_string();
        assert!(error.contains(expected), "{stored:?}: {error}");
    };
    refused("<MPD><Period/>", "not XML");
    refused("<Playlist/>", "not MPD");
    refused("<MPD/>", "no Period");
    refused(
        "<MPD><BaseURL>a/</BaseURL><BaseURL>b/</BaseURL><Period/></MPD>",
        "more than one",
    );
    refused(
        "<MPD><BaseURL>http://cdn/a/</BaseURL><Period/></MPD>",
        "not relative",
    );
    refused("<MPD><BaseURL>/a/</BaseURL><Period/></MPD>", "not relative");
    refused(
        "<MPD><BaseURL serviceLocation=\"x\">a/</BaseURL><Period/></MPD>",
        "has attributes",
    );
    refused(
        "<MPD><ContentSteering>/s</ContentSteering><Period/></MPD>",
        "already has",
    );
    refused(
        "<!DOCTYPE MPD [<!ENTITY a \"aaaa\">]><MPD><Period/></MPD>",
        "not XML",
    );
    let huge = format!("<MPD><Period/>{}</MPD>", " ".repeat(MAX_MPD_LEN));
    refused(&huge, "larger than");
}
