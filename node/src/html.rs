//! Escaping text for the HTML and SVG this node writes (reports, plots): every text in them may
//! come from a researcher's file names or a peer's report.

/// `text` with the characters special to HTML and XML escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_is_escaped() {
        assert_eq!(super::escape("<script>a&'\"</script>"), "&lt;script&gt;a&amp;&#39;&quot;&lt;/script&gt;");
    }
}
