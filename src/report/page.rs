//! The console page (`console.html`, embedded) and the run report: the same page with the
//! status JSON embedded in it. Both it and the backtest report take their charts from
//! `charts.js` ([`with_charts`]).

use std::sync::LazyLock;

use serde_json::Value;

/// The chart code both pages share; each page holds [`CHARTS_MARKER`] where it goes.
const CHARTS_JS: &str = include_str!("charts.js");

/// The line of a page's inline script that [`with_charts`] replaces with [`CHARTS_JS`].
const CHARTS_MARKER: &str = "/*@charts.js*/";

/// `template` with the shared chart code in place of its [`CHARTS_MARKER`] line.
pub(crate) fn with_charts(template: &str) -> String {
    template.replacen(CHARTS_MARKER, CHARTS_JS, 1)
}

/// The page, as served at `/` of the console: it fetches `/api/status` every second.
static PAGE: LazyLock<String> = LazyLock::new(|| with_charts(include_str!("console.html")));

/// The empty status element of [`PAGE`]; a report fills it.
const STATUS_ELEMENT: &str = r#"<script type="application/json" id="status"></script>"#;

/// The console page: one self-contained HTML document (inline CSS, JS and SVG; it loads
/// nothing but `/api/status`).
pub fn console_page() -> &'static str {
    PAGE.as_str()
}

/// `status` as JSON text that can stand inside a `<script>` element: `<`, `>` and `&` (which
/// JSON only has inside strings) written as `\u003c`, `\u003e`, `\u0026`, so no name in the
/// data can close the element or open a comment.
pub fn script_safe_json(status: &Value) -> String {
    script_safe(&status.to_string())
}

/// JSON text (any serialisation of it) made safe for a `<script>` element as
/// [`script_safe_json`] does.
pub(crate) fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The run report: the console page with `status` embedded, rendered once when opened
/// (no request is made).
pub fn render_report(status: &Value) -> String {
    let filled = format!(
        r#"<script type="application/json" id="status">{}</script>"#,
        script_safe_json(status)
    );
    PAGE.replacen(STATUS_ELEMENT, &filled, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_chart_code_is_spliced_in_once() {
        let template = include_str!("console.html");
        assert_eq!(template.matches(CHARTS_MARKER).count(), 1);
        assert!(!CHARTS_JS.contains(CHARTS_MARKER));
        // The script element holding it must not be closed early.
        assert!(!CHARTS_JS.to_ascii_lowercase().contains("</script"));
        let page = console_page();
        assert!(!page.contains(CHARTS_MARKER));
        assert_eq!(page.matches("function chart(containerId").count(), 1);
        assert_eq!(
            page.len(),
            template.len() - CHARTS_MARKER.len() + CHARTS_JS.len()
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = console_page();
        assert_eq!(page.matches(STATUS_ELEMENT).count(), 1);
        for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
            let hits: Vec<&str> = page
                .match_indices(external)
                .map(|(i, _)| &page[i..(i + 40).min(page.len())])
                .filter(|hit| !hit.starts_with("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{external}: {hits:?}");
        }
        assert!(!page.contains(".innerHTML") && !page.contains("insertAdjacentHTML"));
    }

    #[test]
    fn embedded_names_cannot_break_out() {
        let evil = "</script><script>alert(1)</script><!-- & \u{2028}";
        let status = json!({"latest_detections": [{"customer_name": evil}]});
        let page = render_report(&status);
        let start = page.find(r#"id="status">"#).unwrap() + r#"id="status">"#.len();
        let end = start + page[start..].find("</script>").unwrap();
        let embedded = &page[start..end];
        assert!(!embedded.contains('<') && !embedded.contains('>') && !embedded.contains('&'));
        let back: Value = serde_json::from_str(embedded).unwrap();
        assert_eq!(back, status);
        assert_eq!(page.len(), PAGE.len() + embedded.len());
    }
}
