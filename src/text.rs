//! Text from the board, made safe to show: characters that are invisible or that
//! reorder what a terminal (or `git log`) shows are written as escapes, and long
//! names are cut before they are echoed in a message.

/// Whether `c` is invisible or changes how the text around it is shown: the
/// Unicode direction marks, embeddings, overrides and isolates (which can make
/// `T1 held by a` read as something else, as in the "Trojan Source" attack), the
/// zero-width characters, and other format characters that print as nothing.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{061C}'
        | '\u{115F}'..='\u{1160}'
        | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// `s` with every [`is_invisible`] character written as `\u{...}`.
pub fn escape_invisible(s: &str) -> String {
    if !s.chars().any(is_invisible) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` quoted for an error message, cut to `max` characters: a 10,000-character
/// id is named by its start, not echoed whole.
pub fn quote(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(max).collect();
    format!("{head:?}… ({n} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_overrides_and_zero_width_characters_are_escaped() {
        assert_eq!(
            escape_invisible("a\u{202E}b\u{200B}c"),
            "a\\u{202e}b\\u{200b}c"
        );
        assert_eq!(escape_invisible("plain ünïcödé"), "plain ünïcödé");
        assert_eq!(escape_invisible("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(10_000);
        let q = quote(&long, 64);
        assert!(q.len() < 100, "{q}");
        assert!(q.contains("10000 characters"), "{q}");
        assert_eq!(quote("T1", 64), "\"T1\"");
    }
}
