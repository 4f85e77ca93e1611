//! Readable video ids for uploads that name none: a slug of the title
//! ("My First Clip!" → `my-first-clip`), so URLs say what they show.
//!
//! A slug is lowercase ASCII letters, digits and single hyphens, at most
//! [`MAX_SLUG_LEN`] characters, cut at a word boundary where one is near;
//! common Latin accented letters are written without their accent (é → e,
//! ß → ss), anything else separates words. A title with no usable letter
//! gives [`FALLBACK_SLUG`]. Uniqueness is the caller's: [`candidates`]
//! yields the slug, then `slug-2`, `slug-3`, … to try in turn. Every
//! candidate is a valid [`kinema_core::VideoId`].

/// Longest slug, characters: short enough for a URL to stay readable, with
/// room under the 64-character id limit for a `-NN` suffix.
pub const MAX_SLUG_LEN: usize = 48;
/// The slug of a title without a letter or digit.
pub const FALLBACK_SLUG: &str = "video";
/// How many numbered candidates follow the plain slug.
pub const MAX_SUFFIX: u32 = 99;

/// The slug of `title`.
pub fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len().min(MAX_SLUG_LEN * 2));
    let mut pending_hyphen = false;
    for character in title.chars() {
        let spelled = ascii_spelling(character);
        if spelled.is_empty() {
            pending_hyphen = !slug.is_empty();
            continue;
        }
        if pending_hyphen {
            slug.push('-');
            pending_hyphen = false;
        }
        slug.push_str(spelled);
        if slug.len() > MAX_SLUG_LEN {
            break;
        }
    }
    if slug.len() > MAX_SLUG_LEN {
        // Cut at the last word boundary in the second half, else anywhere.
        let cut = match slug[..=MAX_SLUG_LEN].rfind('-') {
            Some(hyphen) if hyphen >= MAX_SLUG_LEN / 2 => hyphen,
            _ => MAX_SLUG_LEN,
        };
        slug.truncate(cut);
        while slug.ends_with('-') {
            slug.pop();
        }
    }
    if slug.is_empty() {
        FALLBACK_SLUG.to_string()
    } else {
        slug
    }
}

/// The ids to try for `title`, in order: its slug, then `slug-2` up to
/// `slug-{MAX_SUFFIX}`.
pub fn candidates(title: &str) -> impl Iterator<Item = String> {
    let slug = slugify(title);
    std::iter::once(slug.clone()).chain((2..=MAX_SUFFIX).map(move |n| format!("{slug}-{n}")))
}

/// A title from an uploaded file's name: its stem, with `_`, `-` and `.`
/// read as spaces (`my_holiday-2024.final.mp4` → `my holiday 2024 final`).
/// None when nothing is left.
pub fn title_from_file_name(name: &str) -> Option<String> {
    // A browser may send a path; only its last part names the file.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let words: Vec<&str> = stem
        .split(|c: char| c == '_' || c == '-' || c == '.' || c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect();
    let title = words.join(" ");
    (!title.is_empty()).then_some(title)
}

/// How `character` is written in a slug: itself lowercased if ASCII
/// alphanumeric, its unaccented Latin letters, or "" (a separator).
fn ascii_spelling(character: char) -> &'static str {
    const ASCII: [&str; 36] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f", "g", "h",
        "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    let lower = character.to_ascii_lowercase();
    if lower.is_ascii_digit() {
        return ASCII[(lower as u8 - b'0') as usize];
    }
    if lower.is_ascii_lowercase() {
        return ASCII[10 + (lower as u8 - b'a') as usize];
    }
    match character {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'ā' | 'ą' => {
            "a"
        }
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' | 'Ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' | 'ē' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'ī' | 'ı' => "i",
        'ł' | 'Ł' => "l",
        'ñ' | 'Ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'ō' | 'ő' => {
            "o"
        }
        'œ' | 'Œ' => "oe",
        'ř' => "r",
        'ś' | 'š' | 'Š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'þ' | 'Þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'ź' | 'ż' | 'ž' | 'Ž' => "z",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_become_lowercase_hyphenated_ascii() {
        for (title, slug) in [
            ("My First Clip!", "my-first-clip"),
            ("  Crème brûlée — à la carte  ", "creme-brulee-a-la-carte"),
            ("Straße 42", "strasse-42"),
            ("UPPER_and_lower", "upper-and-lower"),
            ("../../etc/passwd", "etc-passwd"),
            ("日本語", "video"),
            ("", "video"),
            ("--", "video"),
            ("a--b", "a-b"),
        ] {
            assert_eq!(slugify(title), slug, "{title:?}");
        }
    }

    #[test]
    fn long_titles_are_cut_at_a_word_boundary() {
        let slug =
            slugify("the quick brown fox jumps over the lazy dog and keeps running far away");
        assert_eq!(slug, "the-quick-brown-fox-jumps-over-the-lazy-dog-and");
        assert!(slug.len() <= MAX_SLUG_LEN);
        // One long word is cut where the limit falls.
        assert_eq!(slugify(&"x".repeat(100)), "x".repeat(MAX_SLUG_LEN));
    }

    #[test]
    fn candidates_are_valid_ids_with_numbered_suffixes() {
        let all: Vec<String> = candidates(&"word ".repeat(40)).collect();
        assert_eq!(all.len(), MAX_SUFFIX as usize);
        assert_eq!(all[1], format!("{}-2", all[0]));
        for candidate in &all {
            kinema_core::VideoId::new(candidate.clone()).unwrap();
        }
    }

    #[test]
    fn file_names_give_titles() {
        assert_eq!(
            title_from_file_name("my_holiday-2024.final.mp4").as_deref(),
            Some("my holiday 2024 final")
        );
        assert_eq!(
            title_from_file_name("C:\\Users\\me\\Clip One.mov").as_deref(),
            Some("Clip One")
        );
        assert_eq!(title_from_file_name(".mp4").as_deref(), Some("mp4"));
        assert_eq!(title_from_file_name("___.mp4"), None);
    }
}
