//! How durations, sizes and dates read on the page.

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn duration_ms(ms: u64) -> String {
    let total = ms / 1000;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

/// A duration for screen readers: "1 minute 5 seconds".
pub fn duration_words(ms: u64) -> String {
    let total = ms / 1000;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let part = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(part(h, "hour"));
    }
    if m > 0 {
        parts.push(part(m, "minute"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(part(s, "second"));
    }
    parts.join(" ")
}

/// Bytes in B, KB, MB or GB (powers of 1000, one decimal under 10).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Whether a user name is acceptable, counted in characters after trimming
/// (as the server counts it); the message says what to change.
pub fn check_user_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let max = audiobook_wire::MAX_USER_NAME_CHARS;
    match audiobook_wire::char_len(name) {
        0 => Err("Please enter your name.".into()),
        n if n > max => Err(format!("Your name is {n} characters long; please use at most {max}.")),
        _ => Ok(name.to_string()),
    }
}

/// Whether a recording name is acceptable (1–50 characters after trimming,
/// no control characters), as the server checks it.
pub fn check_recording_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let max = audiobook_wire::MAX_RECORDING_NAME_CHARS;
    match audiobook_wire::char_len(name) {
        0 => Err("Please enter a name.".into()),
        n if n > max => Err(format!("This name is {n} characters long; please use at most {max}.")),
        _ if name.chars().any(char::is_control) => Err("Please use letters, digits and punctuation only.".into()),
        _ => Ok(name.to_string()),
    }
}

/// Seconds as `m:ss` (a position in the player).
pub fn seconds(s: f64) -> String {
    if s.is_finite() && s > 0.0 { duration_ms((s * 1000.0) as u64) } else { duration_ms(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms(0), "0:00");
        assert_eq!(duration_ms(5_400), "0:05");
        assert_eq!(duration_ms(65_000), "1:05");
        assert_eq!(duration_ms(3_725_000), "1:02:05");
        assert_eq!(duration_words(0), "0 seconds");
        assert_eq!(duration_words(61_000), "1 minute 1 second");
        assert_eq!(duration_words(3_600_000), "1 hour");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500), "1.5 KB");
        assert_eq!(size(80_000), "80 KB");
        assert_eq!(size(12_300_000), "12 MB");
    }

    #[test]
    fn user_names_are_counted_in_characters_after_trimming() {
        assert_eq!(check_user_name("  Ann "), Ok("Ann".into()));
        assert!(check_user_name("   ").is_err());
        assert_eq!(check_user_name(&"é".repeat(20)), Ok("é".repeat(20)));
        assert!(check_user_name(&"é".repeat(21)).unwrap_err().contains("21 characters"));
    }

    #[test]
    fn recording_names_are_checked_like_the_server_does() {
        assert_eq!(check_recording_name("  Interview "), Ok("Interview".into()));
        assert!(check_recording_name(" ").unwrap_err().contains("enter a name"));
        assert_eq!(check_recording_name(&"é".repeat(50)), Ok("é".repeat(50)));
        assert!(check_recording_name(&"é".repeat(51)).unwrap_err().contains("51 characters"));
        assert!(check_recording_name("a\u{7}b").is_err());
    }

    #[test]
    fn positions() {
        assert_eq!(seconds(f64::INFINITY), "0:00");
        assert_eq!(seconds(75.4), "1:15");
    }
}
