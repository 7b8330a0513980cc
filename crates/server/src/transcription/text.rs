//! Transcript text: what search indexes and matches, where a match is spoken,
//! the snippet shown for it, and the word error rate used by tests and the
//! benchmark.
//!
//! Words are split into terms the way both full-text indexes do (SQLite's
//! `unicode61` tokenizer and PostgreSQL's `simple` configuration): runs of
//! letters and digits, lowercased, no stemming. A search query is reduced to
//! such terms before it reaches either index, so no query syntax of theirs
//! (quotes, `*`, `NEAR`, `&`, `:`) can come from a user.

use audiobook_wire::{SnippetPart, TranscriptMatch, TranscriptSegment};

/// Terms of a query kept (the rest are ignored), and their longest length.
pub const MAX_TERMS: usize = 8;
const MAX_TERM_CHARS: usize = 64;
/// Words of context before and after the first match in a snippet.
const SNIPPET_BEFORE: usize = 6;
const SNIPPET_AFTER: usize = 10;

/// The terms of `text`: letter and digit runs, lowercased.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase)
}

/// A search query's terms (deduplicated, at most [`MAX_TERMS`], each cut to
/// 64 characters). The last one matches as a prefix (search as you type).
pub fn search_terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in terms(query) {
        let term: String = term.chars().take(MAX_TERM_CHARS).collect();
        if !out.contains(&term) {
            out.push(term);
        }
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// An FTS5 query: the owner's token and every term (the last one as a
/// prefix). Terms hold only letters and digits, so quoting them is enough.
pub fn fts5_query(owner: &str, terms: &[String]) -> String {
    let mut q = format!("owner:\"{owner}\"");
    for (i, t) in terms.iter().enumerate() {
        q.push_str(&format!(" AND text:\"{t}\""));
        if i + 1 == terms.len() {
            q.push('*');
        }
    }
    q
}

/// A PostgreSQL `tsquery`: every term (the last one as a prefix).
pub fn tsquery(terms: &[String]) -> String {
    let mut parts: Vec<String> = terms.iter().map(|t| format!("'{t}'")).collect();
    if let Some(last) = parts.last_mut() {
        last.push_str(":*");
    }
    parts.join(" & ")
}

/// The searchable form of a transcript: its words separated by single
/// spaces, and the start of each (u32 little-endian milliseconds), so that
/// the n-th word of the text is the n-th time.
pub fn index_words(segments: &[TranscriptSegment]) -> (String, Vec<u8>) {
    let mut text = String::new();
    let mut times = Vec::new();
    let mut push = |word: &str, start_ms: u64| {
        for piece in word.split_whitespace() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(piece);
            times.extend_from_slice(&(start_ms.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        }
    };
    for segment in segments {
        if segment.words.is_empty() {
            // No word times: spread the segment's words over its span.
            let words: Vec<&str> = segment.text.split_whitespace().collect();
            let span = segment.end_ms.saturating_sub(segment.start_ms);
            for (i, word) in words.iter().enumerate() {
                push(word, segment.start_ms + span * i as u64 / words.len() as u64);
            }
        } else {
            for word in &segment.words {
                push(&word.text, word.start_ms);
            }
        }
    }
    (text, times)
}

fn word_start(word_ms: &[u8], index: usize) -> u64 {
    word_ms.get(index * 4..index * 4 + 4).map_or(0, |b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// Whether a word's term equals query term `i` (the last one: starts with it).
fn term_matches(term: &str, query: &[String], i: usize) -> bool {
    if i + 1 == query.len() { term.starts_with(query[i].as_str()) } else { term == query[i] }
}

/// Where `query` matches a transcript: the first place where its terms come
/// in a row, else the first word with any of them; with a snippet around it.
pub fn find_match(text: &str, word_ms: &[u8], query: &[String]) -> Option<TranscriptMatch> {
    if query.is_empty() {
        return None;
    }
    let words: Vec<&str> = text.split(' ').collect();
    // (term, index of its word)
    let tokens: Vec<(String, usize)> =
        words.iter().enumerate().flat_map(|(i, w)| terms(w).map(move |t| (t, i))).collect();
    let in_a_row = (0..tokens.len()).find(|&start| {
        start + query.len() <= tokens.len() && (0..query.len()).all(|k| term_matches(&tokens[start + k].0, query, k))
    });
    let hit_word = |w: &str| terms(w).any(|t| (0..query.len()).any(|k| term_matches(&t, query, k)));
    let first = match in_a_row {
        Some(start) => tokens[start].1,
        None => tokens.iter().find(|(t, _)| (0..query.len()).any(|k| term_matches(t, query, k)))?.1,
    };
    let from = first.saturating_sub(SNIPPET_BEFORE);
    let to = (first + SNIPPET_AFTER + 1).min(words.len());
    let mut snippet: Vec<SnippetPart> = Vec::new();
    let mut push = |text: &str, hit: bool| match snippet.last_mut() {
        Some(last) if !last.hit && !hit => last.text.push_str(text),
        _ => snippet.push(SnippetPart { text: text.to_string(), hit }),
    };
    if from > 0 {
        push("… ", false);
    }
    for (i, word) in words[from..to].iter().enumerate() {
        if i > 0 {
            push(" ", false);
        }
        push(word, hit_word(word));
    }
    if to < words.len() {
        push(" …", false);
    }
    Some(TranscriptMatch { snippet, at_ms: word_start(word_ms, first) })
}

/// Word error rate of `hypothesis` against `reference`: (substitutions +
/// deletions + insertions) / reference words, on lowercased terms without
/// punctuation.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<String> = terms(reference).collect();
    let h: Vec<String> = terms(hypothesis).collect();
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    // Levenshtein distance over words, one row at a time.
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous + usize::from(rw != hw);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[h.len()] as f64 / r.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiobook_wire::TranscriptWord;

    fn segment(start: u64, words: &[(&str, u64)]) -> TranscriptSegment {
        TranscriptSegment {
            start_ms: start,
            end_ms: words.last().map_or(start, |w| w.1 + 300),
            text: words.iter().map(|w| w.0).collect::<Vec<_>>().join(" "),
            words: words
                .iter()
                .map(|(t, at)| TranscriptWord {
                    start_ms: *at,
                    end_ms: at + 250,
                    text: t.to_string(),
                    probability: 0.9,
                })
                .collect(),
        }
    }

    #[test]
    fn hostile_queries_become_plain_terms() {
        assert_eq!(
            search_terms("  Fox's \"NEAR(a b)\" OR * -x %_ \\ 'x':* & | ! ✓ "),
            ["fox", "s", "near", "a", "b", "or", "x"]
        );
        assert!(search_terms("\"*:&|!()%_\\'").is_empty());
        assert_eq!(search_terms("Élan ÉLAN"), ["élan"]);
        assert_eq!(search_terms(&"a ".repeat(50)).len(), 1);
        assert_eq!(search_terms(&"w".repeat(500))[0].len(), 64);
        let many = search_terms("a b c d e f g h i j k");
        assert_eq!(many.len(), MAX_TERMS);
        assert_eq!(fts5_query("u1", &["fox".into(), "ju".into()]), "owner:\"u1\" AND text:\"fox\" AND text:\"ju\"*");
        assert_eq!(tsquery(&["fox".into(), "ju".into()]), "'fox' & 'ju':*");
    }

    #[test]
    fn words_keep_their_times_and_matches_jump_there() {
        let segments = vec![
            segment(0, &[("The", 0), ("quick", 300), ("brown", 600), ("fox,", 900)]),
            segment(2000, &[("jumps", 2000), ("over", 2300), ("the", 2500), ("lazy", 2700), ("dog.", 3000)]),
            TranscriptSegment { start_ms: 4000, end_ms: 6000, text: "no word times".into(), words: vec![] },
        ];
        let (text, times) = index_words(&segments);
        assert_eq!(text, "The quick brown fox, jumps over the lazy dog. no word times");
        assert_eq!(times.len(), 4 * 12);
        assert_eq!(word_start(&times, 4), 2000);
        assert_eq!(word_start(&times, 10), 4000 + 2000 / 3);

        let m = find_match(&text, &times, &search_terms("LAZY")).unwrap();
        assert_eq!(m.at_ms, 2700);
        let hits: Vec<&str> = m.snippet.iter().filter(|p| p.hit).map(|p| p.text.as_str()).collect();
        assert_eq!(hits, ["lazy"]);
        let all: String = m.snippet.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(all, "… quick brown fox, jumps over the lazy dog. no word times");
        // Terms in a row win over an earlier single term; the last is a prefix.
        assert_eq!(find_match(&text, &times, &search_terms("the la")).unwrap().at_ms, 2500);
        assert_eq!(find_match(&text, &times, &search_terms("fox")).unwrap().at_ms, 900);
        assert_eq!(find_match(&text, &times, &search_terms("dog the")).unwrap().at_ms, 0, "first word with a term");
        assert!(find_match(&text, &times, &search_terms("cat")).is_none());
        assert!(find_match("", &[], &search_terms("cat")).is_none());
        // Truncated times never panic.
        assert_eq!(find_match(&text, &times[..4], &search_terms("dog")).unwrap().at_ms, 0);
    }

    #[test]
    fn word_error_rate_counts_edits() {
        assert_eq!(word_error_rate("The quick brown fox.", "the quick, brown fox"), 0.0);
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b c d e f"), 0.5);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("a", ""), 1.0);
    }
}
