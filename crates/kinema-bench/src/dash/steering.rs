//! DASH-IF content steering in an MPD (DASH-IF CTS 001): the MPD-level
//! `<ContentSteering>` names the steering server and the first service
//! location, and one MPD-level `<BaseURL serviceLocation="…">` per pathway
//! says where that pathway serves from. Each service location becomes a
//! [`PathwaySet`], the whole MPD read once through that `BaseURL`.
//!
//! Steering that cannot be followed (no server, no service locations, too
//! many, invalid ids) is dropped with a warning the viewer counts: the MPD
//! then plays as without steering.

use roxmltree::{Document, Node};
use url::Url;

use super::{elements, malformed, parse_at};
use crate::BenchError;
use crate::presentation::{PathwaySet, Presentation, Steered};
use crate::steering::{MAX_PATHWAYS, valid_pathway_id};

/// The MPD-level `BaseURL` of `location`, resolved against the MPD's URL.
pub(super) fn base_url_at(mpd_url: &Url, mpd: Node, location: &str) -> Result<Url, BenchError> {
    let node = elements(mpd, "BaseURL")
        .find(|node| node.attribute("serviceLocation") == Some(location))
        .ok_or_else(|| malformed(format!("no BaseURL has serviceLocation {location:?}")))?;
    let reference = node.text().unwrap_or_default().trim();
    mpd_url.join(reference).map_err(|error| {
        malformed(format!(
            "BaseURL {reference:?} is not a valid reference from {mpd_url}: {error}"
        ))
    })
}

/// Adds the pathways of a steered MPD to `presentation` (read without a
/// service location), or a warning when its steering cannot be followed.
pub(super) fn add_pathways(
    presentation: &mut Presentation,
    text: &str,
    mpd_url: &Url,
) -> Result<(), BenchError> {
    let document = Document::parse(text.trim_start_matches('\u{feff}'))
        .map_err(|error| malformed(format!("not well-formed XML: {error}")))?;
    let mpd = document.root_element();
    let Some(steering) = elements(mpd, "ContentSteering").next() else {
        return Ok(());
    };
    let warn = |presentation: &mut Presentation, detail: String| {
        presentation.steering_warning = Some(format!("ContentSteering ignored: {detail}"));
        Ok(())
    };
    let reference = steering.text().unwrap_or_default().trim();
    let server = match mpd_url.join(reference) {
        Ok(server) if !reference.is_empty() => server,
        _ => {
            return warn(
                presentation,
                format!("steering server {reference:?} is not a URL"),
            );
        }
    };
    let mut locations: Vec<String> = Vec::new();
    for node in elements(mpd, "BaseURL") {
        let Some(location) = node.attribute("serviceLocation") else {
            continue;
        };
        if !valid_pathway_id(location) {
            return warn(
                presentation,
                "a serviceLocation is not a valid pathway id".into(),
            );
        }
        if !locations.iter().any(|known| known == location) {
            locations.push(location.to_string());
        }
        if locations.len() > MAX_PATHWAYS {
            return warn(
                presentation,
                format!("more than {MAX_PATHWAYS} service locations"),
            );
        }
    }
    if locations.is_empty() {
        return warn(presentation, "no BaseURL carries a serviceLocation".into());
    }
    let initial = steering
        .attribute("defaultServiceLocation")
        .and_then(|list| {
            list.split(',')
                .map(str::trim)
                .find(|id| locations.iter().any(|l| l == id))
        })
        .map(str::to_string);
    let mut sets = Vec::with_capacity(locations.len());
    for location in locations {
        let read = parse_at(text, mpd_url, Some(&location))?;
        sets.push(PathwaySet {
            id: location,
            renditions: read.renditions,
            audio: read.audio,
        });
    }
    let first = initial.clone().unwrap_or_else(|| sets[0].id.clone());
    if let Some(set) = sets.iter().find(|set| set.id == first) {
        presentation.renditions = set.renditions.clone();
        presentation.audio = set.audio.clone();
    }
    presentation.steering = Some(Steered {
        server,
        initial,
        sets,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use crate::presentation::TrackSource;
    use url::Url;

    const STEERED: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8S">
  <ContentSteering defaultServiceLocation="b" queryBeforeStart="true">http://127.0.0.3:8080/steer/clip?session=S&amp;proto=dash</ContentSteering>
  <BaseURL serviceLocation="a">http://127.0.0.2:8080/v/clip/g5/</BaseURL>
  <BaseURL serviceLocation="b">http://127.0.0.3:8080/v/clip/g5/</BaseURL>
  <Period>
    <AdaptationSet contentType="video">
      <SegmentTemplate media="$RepresentationID$/$Number$.m4s" initialization="$RepresentationID$/init.mp4" duration="4" startNumber="1"/>
      <Representation id="v360" bandwidth="500000"/>
      <Representation id="v720" bandwidth="2000000"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

    fn base(source: &TrackSource) -> String {
        source.loaded().unwrap().base.to_string()
    }

    #[test]
    fn each_service_location_is_a_pathway() {
        let url = Url::parse("http://127.0.0.2:8080/v/clip/manifest.mpd").unwrap();
        let presentation = parse(STEERED, &url).unwrap();
        assert_eq!(presentation.steering_warning, None);
        let steered = presentation.steering.as_ref().unwrap();
        assert_eq!(
            steered.server.as_str(),
            "http://127.0.0.3:8080/steer/clip?session=S&proto=dash"
        );
        assert_eq!(steered.initial.as_deref(), Some("b"));
        let ids: Vec<&str> = steered.sets.iter().map(|set| set.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            base(&steered.sets[0].renditions[1].media),
            "http://127.0.0.2:8080/v/clip/g5/"
        );
        // The presentation's own ladder is the default location's.
        assert_eq!(
            base(&presentation.renditions[0].media),
            "http://127.0.0.3:8080/v/clip/g5/"
        );
    }

    #[test]
    fn steering_that_cannot_be_followed_is_a_warning() {
        let url = Url::parse("http://127.0.0.2:8080/v/clip/manifest.mpd").unwrap();
        let bad_id = STEERED.replace("serviceLocation=\"a\"", "serviceLocation=\"a b\"");
        let none = STEERED
            .replace(" serviceLocation=\"a\"", "")
            .replace(" serviceLocation=\"b\"", "");
        for text in [bad_id, none] {
            let presentation = parse(&text, &url).unwrap();
            assert!(presentation.steering.is_none());
            assert!(
                presentation
                    .steering_warning
                    .as_deref()
                    .is_some_and(|w| w.contains("ContentSteering ignored")),
                "{:?}",
                presentation.steering_warning
            );
        }
    }
}
