//! Language tags of source tracks, as players want them.
//!
//! Containers tag tracks with ISO 639-2 codes (`eng`, `fre` or `fra`), or,
//! in Matroska's newer `BCP47` element and in MP4 from some tools, with a
//! BCP 47 tag already (`en`, `pt-BR`). HLS `LANGUAGE` and DASH `@lang` are
//! BCP 47, whose rule is the shortest ISO 639 code: a language with a
//! two-letter code must use it. Unknown three-letter codes are kept (they
//! are valid BCP 47 primary subtags when no two-letter code exists).

/// ISO 639-2 (bibliographic and terminology) → ISO 639-1, and an English
/// name for the track menu, for the languages sources commonly carry.
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("eng", "en", "English"),
    ("fre", "fr", "French"),
    ("fra", "fr", "French"),
    ("ger", "de", "German"),
    ("deu", "de", "German"),
    ("spa", "es", "Spanish"),
    ("ita", "it", "Italian"),
    ("por", "pt", "Portuguese"),
    ("rus", "ru", "Russian"),
    ("jpn", "ja", "Japanese"),
    ("chi", "zh", "Chinese"),
    ("zho", "zh", "Chinese"),
    ("kor", "ko", "Korean"),
    ("ara", "ar", "Arabic"),
    ("hin", "hi", "Hindi"),
    ("dut", "nl", "Dutch"),
    ("nld", "nl", "Dutch"),
    ("swe", "sv", "Swedish"),
    ("nor", "no", "Norwegian"),
    ("dan", "da", "Danish"),
    ("fin", "fi", "Finnish"),
    ("pol", "pl", "Polish"),
    ("tur", "tr", "Turkish"),
    ("cze", "cs", "Czech"),
    ("ces", "cs", "Czech"),
    ("gre", "el", "Greek"),
    ("ell", "el", "Greek"),
    ("heb", "he", "Hebrew"),
    ("hun", "hu", "Hungarian"),
    ("ukr", "uk", "Ukrainian"),
    ("vie", "vi", "Vietnamese"),
    ("tha", "th", "Thai"),
    ("ind", "id", "Indonesian"),
    ("may", "ms", "Malay"),
    ("msa", "ms", "Malay"),
    ("rum", "ro", "Romanian"),
    ("ron", "ro", "Romanian"),
    ("bul", "bg", "Bulgarian"),
    ("hrv", "hr", "Croatian"),
    ("srp", "sr", "Serbian"),
    ("slo", "sk", "Slovak"),
    ("slk", "sk", "Slovak"),
    ("slv", "sl", "Slovenian"),
    ("cat", "ca", "Catalan"),
    ("per", "fa", "Persian"),
    ("fas", "fa", "Persian"),
    ("ben", "bn", "Bengali"),
    ("tam", "ta", "Tamil"),
    ("tel", "te", "Telugu"),
    ("urd", "ur", "Urdu"),
];

/// The tag meaning "no language given".
pub const UNDETERMINED: &str = "und";

/// The BCP 47 tag of a container's language tag; `und` when there is none
/// or it is not a well-formed tag (letters, digits and dashes only, the
/// first subtag 2–3 letters).
pub fn bcp47(tag: Option<&str>) -> String {
    let Some(tag) = tag.map(str::trim).filter(|tag| !tag.is_empty()) else {
        return UNDETERMINED.to_string();
    };
    let lower = tag.to_ascii_lowercase();
    if let Some((_, two, _)) = LANGUAGES.iter().find(|(three, _, _)| *three == lower) {
        return (*two).to_string();
    }
    let mut subtags = tag.split(['-', '_']);
    let primary = subtags.next().unwrap_or_default();
    let well_formed = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && tag.len() <= 35
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !well_formed {
        return UNDETERMINED.to_string();
    }
    // BCP 47 case conventions: language lowercase, region uppercase.
    let mut out = primary.to_ascii_lowercase();
    for subtag in subtags {
        out.push('-');
        if subtag.len() == 2 {
            out.push_str(&subtag.to_ascii_uppercase());
        } else {
            out.push_str(subtag);
        }
    }
    out
}

/// The ISO 639-2 code of a BCP 47 tag's language (what an MP4 `mdhd`
/// box holds): `fre` for `fr`; `und` when unknown.
pub fn iso639_2(tag: &str) -> &str {
    let primary = tag.split('-').next().unwrap_or_default();
    if let Some((three, _, _)) = LANGUAGES.iter().find(|(_, two, _)| *two == primary) {
        return three;
    }
    if primary.len() == 3 && primary.chars().all(|c| c.is_ascii_lowercase()) {
        primary
    } else {
        UNDETERMINED
    }
}

/// The English name of a BCP 47 tag's language, when known.
pub fn name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next().unwrap_or_default();
    LANGUAGES
        .iter()
        .find(|(_, two, _)| *two == primary)
        .map(|(_, _, name)| *name)
}

/// Whether a track tagged `tag` is one of `wanted` (BCP 47 or ISO 639-2,
/// compared by primary language: `en` keeps `en-GB`).
pub fn matches(tag: &str, wanted: &str) -> bool {
    let primary = |tag: &str| {
        bcp47(Some(tag))
            .split('-')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    primary(tag) == primary(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_tags_become_bcp47() {
        assert_eq!(bcp47(Some("eng")), "en");
        assert_eq!(bcp47(Some("fre")), "fr");
        assert_eq!(bcp47(Some("FRA")), "fr");
        assert_eq!(bcp47(Some("pt-br")), "pt-BR");
        assert_eq!(bcp47(Some("yue")), "yue");
        assert_eq!(bcp47(Some("und")), "und");
        assert_eq!(bcp47(None), "und");
        assert_eq!(bcp47(Some("")), "und");
        assert_eq!(bcp47(Some("\"><script>")), "und");
        assert_eq!(bcp47(Some("english")), "und");
    }

    #[test]
    fn names_and_matching() {
        assert_eq!(name("fr"), Some("French"));
        assert_eq!(name("pt-BR"), Some("Portuguese"));
        assert_eq!(name("yue"), None);
        assert!(matches("en-GB", "en"));
        assert!(matches("en", "eng"));
        assert!(!matches("fr", "en"));
        assert_eq!(iso639_2("fr"), "fre");
        assert_eq!(iso639_2("pt-BR"), "por");
        assert_eq!(iso639_2("yue"), "yue");
        assert_eq!(iso639_2("und"), "und");
    }
}
