//! The console page (`console.html`, embedded) and the run report: the same page with the
//! status JSON embedded in it. Its charts are uPlot's (`vendor/`, inlined); it and the
//! backtest report share the helpers of `charts.js` ([`with_charts`]), whose SVG charts only
//! the backtest report draws.

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

/// uPlot (MIT, `vendor/uPlot.LICENSE`), as published, and the line of the console page's
/// script that it replaces.
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_JS_MARKER: &str = "/*@uPlot.js*/";

/// uPlot's style sheet and the line of the console page's style that it replaces.
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");
const UPLOT_CSS_MARKER: &str = "/*@uPlot.css*/";

/// The console template with uPlot and the shared chart code in place of their markers.
fn console_with_vendor(template: &str) -> String {
    with_charts(&template.replacen(UPLOT_CSS_MARKER, UPLOT_CSS, 1).replacen(
        UPLOT_JS_MARKER,
        UPLOT_JS,
        1,
    ))
}

/// The page, as served at `/` of the console: it fetches `/api/status` every second.
static PAGE: LazyLock<String> = LazyLock::new(|| console_with_vendor(include_str!("console.html")));

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
        let inlined = [
            (CHARTS_MARKER, CHARTS_JS),
            (UPLOT_JS_MARKER, UPLOT_JS),
            (UPLOT_CSS_MARKER, UPLOT_CSS),
        ];
        let page = console_page();
        let mut expected_len = template.len();
        for (marker, code) in inlined {
            assert_eq!(template.matches(marker).count(), 1, "{marker}");
            assert!(!page.contains(marker), "{marker}");
            for (other, _) in inlined {
                assert!(!code.contains(other), "{other} inside the code of {marker}");
            }
            // The element holding it must not be closed early.
            let lower = code.to_ascii_lowercase();
            assert!(!lower.contains("</script") && !lower.contains("</style"));
            expected_len = expected_len - marker.len() + code.len();
        }
        assert_eq!(page.matches("function chart(containerId").count(), 1);
        assert_eq!(page.matches("var uPlot=function()").count(), 1);
        assert_eq!(page.len(), expected_len);
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
                // uPlot's banner comment names its home; nothing loads it.
                .filter(|hit| !hit.starts_with("https://github.com/leeoniya/uPlot (v"))
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
