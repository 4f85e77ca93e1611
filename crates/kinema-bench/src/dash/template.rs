//! `SegmentTemplate`: URL templates (`$RepresentationID$`, `$Number$`,
//! `$Bandwidth$`, `$Time$`) and the template attributes inherited down
//! Period → AdaptationSet → Representation.

use roxmltree::Node;

use super::{attribute_u64, elements};
use crate::BenchError;

/// Widest `%0Nd` a template may ask for.
const MAX_NUMBER_WIDTH: usize = 32;

/// One piece of a `SegmentTemplate@media` or `@initialization`.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    RepresentationId,
    Number { width: usize },
    Bandwidth { width: usize },
    Time { width: usize },
}

/// A parsed URL template (ISO/IEC 23009-1 §5.3.9.4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct UrlTemplate {
    pieces: Vec<Piece>,
}

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<UrlTemplate, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let close = after
                .find('$')
                .ok_or_else(|| format!("template {text:?} has a '$' that is never closed"))?;
            let identifier = &after[..close];
            rest = &after[close + 1..];
            if identifier.is_empty() {
                // `$$` is a literal dollar sign.
                literal.push('$');
                continue;
            }
            let (name, format) = match identifier.split_once('%') {
                Some((name, format)) => (name, Some(format)),
                None => (identifier, None),
            };
            let width = match format {
                None => 1,
                Some(format) => {
                    let digits = format
                        .strip_prefix('0')
                        .and_then(|format| format.strip_suffix('d'))
                        .filter(|digits| {
                            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                        })
                        .ok_or_else(|| {
                            format!("template {text:?}: format tag %{format} is not %0[width]d")
                        })?;
                    digits
                        .parse::<usize>()
                        .ok()
                        .filter(|width| *width <= MAX_NUMBER_WIDTH)
                        .ok_or_else(|| {
                            format!(
                                "template {text:?}: width {digits} is wider than {MAX_NUMBER_WIDTH}"
                            )
                        })?
                }
            };
            let piece = match name {
                "RepresentationID" if format.is_some() => {
                    return Err(format!(
                        "template {text:?}: $RepresentationID$ takes no format tag"
                    ));
                }
                "RepresentationID" => Piece::RepresentationId,
                "Number" => Piece::Number { width },
                "Bandwidth" => Piece::Bandwidth { width },
                "Time" => Piece::Time { width },
                other => {
                    return Err(format!(
                        "template {text:?}: ${other}$ is not an identifier kinema bench knows \
                         ($RepresentationID$, $Number$, $Bandwidth$, $Time$ or $$)"
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(UrlTemplate { pieces })
    }

    /// Whether the template names segments apart (`$Number$` or `$Time$`).
    pub(super) fn varies_per_segment(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Number { .. } | Piece::Time { .. }))
    }

    pub fn render(
        &self,
        representation_id: &str,
        number: u64,
        bandwidth: u64,
        time: u64,
    ) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::RepresentationId => out.push_str(representation_id),
                Piece::Number { width } => out.push_str(&format!("{number:0width$}")),
                Piece::Bandwidth { width } => out.push_str(&format!("{bandwidth:0width$}")),
                Piece::Time { width } => out.push_str(&format!("{time:0width$}")),
            }
        }
        out
    }
}

/// `SegmentTemplate` attributes as inherited down Period → AdaptationSet
/// → Representation, the lowest level's winning.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TemplateFields<'a, 'input> {
    /// The lowest `SegmentTemplate` seen, for messages.
    pub(super) node: Option<Node<'a, 'input>>,
    pub(super) media: Option<&'a str>,
    pub(super) initialization: Option<&'a str>,
    /// `Initialization` child element (`sourceURL`, `range`).
    pub(super) initialization_element: Option<Node<'a, 'input>>,
    pub(super) timescale: Option<u64>,
    pub(super) duration: Option<u64>,
    pub(super) start_number: Option<u64>,
    pub(super) presentation_time_offset: Option<u64>,
    pub(super) timeline: Option<Node<'a, 'input>>,
}

impl<'a, 'input> TemplateFields<'a, 'input> {
    pub(super) fn inherit(self, element: Node<'a, 'input>) -> Result<Self, BenchError> {
        let Some(template) = elements(element, "SegmentTemplate").next() else {
            return Ok(self);
        };
        Ok(TemplateFields {
            node: Some(template),
            media: template.attribute("media").or(self.media),
            initialization: template.attribute("initialization").or(self.initialization),
            initialization_element: elements(template, "Initialization")
                .next()
                .or(self.initialization_element),
            timescale: attribute_u64(template, "timescale")?.or(self.timescale),
            duration: attribute_u64(template, "duration")?.or(self.duration),
            start_number: attribute_u64(template, "startNumber")?.or(self.start_number),
            presentation_time_offset: attribute_u64(template, "presentationTimeOffset")?
                .or(self.presentation_time_offset),
            timeline: elements(template, "SegmentTimeline")
                .next()
                .or(self.timeline),
        })
    }
}
