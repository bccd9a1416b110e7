//! The one redaction of URLs and locations: what may be shown of a state-store URL, an S3
//! endpoint, a landing, output or importance location in logs, errors, `/api/status`, the
//! console, reports and the run identity's description.
//!
//! - The userinfo password becomes `***` (the user stays, it names the account).
//! - The value of every query parameter whose name holds `pass`, `secret`, `token` or `key`,
//!   in any case (`password`, `PassWord`, `sslkey`, `api_key`, `X-Amz-Security-Token`...),
//!   becomes `***`.
//! - A URL the `url` crate cannot parse, or whose `@` does not sit in its authority (a
//!   password holding `/`, `?` or `#`: drivers split such URLs differently), shows only its
//!   scheme and host — or only its scheme when not even the host is certain.
//!
//! Text without a `scheme:` prefix (a local path) and text with neither `@` nor `?` (no
//! userinfo, no query: nothing there can be a secret) is shown as given, byte for byte; so
//! is a URL with nothing to redact. A leaf module: it depends on nothing else of the crate.

use url::Url;

/// What a secret is replaced with.
const MASK: &str = "***";

/// A query parameter whose name holds one of these (lowercased) is a secret.
const SECRET_WORDS: [&str; 4] = ["pass", "secret", "token", "key"];

/// `text` (a URL or a location) as it may be shown: see the module documentation.
pub fn url(text: &str) -> String {
    let Some(scheme) = scheme_of(text) else {
        return text.to_string();
    };
    if !text.contains(['@', '?']) {
        return text.to_string();
    }
    match Url::parse(text) {
        Ok(parsed) if !outside_authority(text, scheme).contains('@') => redacted(text, parsed),
        _ => scheme_and_host(text, scheme),
    }
}

/// Whether a query parameter name (percent-decoded, any case) names a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// The scheme of `text` (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`), if it
/// starts with one followed by `:`.
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// What follows the authority of `scheme://authority…` (everything after `scheme:` when
/// there is no `//`).
fn outside_authority<'a>(text: &'a str, scheme: &str) -> &'a str {
    let rest = &text[scheme.len() + 1..];
    match rest.strip_prefix("//") {
        Some(hier) => &hier[authority_len(hier)..],
        None => rest,
    }
}

/// The length of the authority at the start of `hier` (up to `/`, `?`, `#` or `\`).
fn authority_len(hier: &str) -> usize {
    hier.find(['/', '?', '#', '\\']).unwrap_or(hier.len())
}

/// The parsed URL with its password and secret query values masked; `text` unchanged when
/// there is nothing to mask (the crate's serialisation may differ from the text in bytes).
fn redacted(text: &str, mut parsed: Url) -> String {
    let mut changed = false;
    if parsed.password().is_some() {
        changed |= parsed.set_password(Some(MASK)).is_ok();
    }
    if let Some(query) = parsed.query().and_then(masked_query) {
        parsed.set_query(Some(&query));
        changed = true;
    }
    if changed {
        parsed.to_string()
    } else {
        text.to_string()
    }
}

/// The query with every secret parameter's value masked, if it has one.
fn masked_query(query: &str) -> Option<String> {
    let mut changed = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if value != MASK && is_secret_name(&decoded(name)) => {
                changed = true;
                format!("{name}={MASK}")
            }
            _ => pair.to_string(),
        })
        .collect();
    changed.then(|| pairs.join("&"))
}

/// A query parameter name, percent- and `+`-decoded.
fn decoded(name: &str) -> String {
    url::form_urlencoded::parse(name.as_bytes())
        .next()
        .map_or_else(String::new, |(name, _)| name.into_owned())
}

/// `scheme://host` of a URL that cannot be redacted piecewise: the host is what follows the
/// last `@` of the authority, shown only when no `@` follows the authority (then userinfo
/// could reach beyond it) and it looks like a host list (`h1:5432,h2`); else `scheme://`.
fn scheme_and_host(text: &str, scheme: &str) -> String {
    let Some(hier) = text[scheme.len() + 1..].strip_prefix("//") else {
        return format!("{scheme}:");
    };
    let (authority, after) = hier.split_at(authority_len(hier));
    let host = authority.rsplit('@').next().unwrap_or_default();
    let plausible = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | ',' | '[' | ']'));
    if after.contains('@') || !plausible {
        format!("{scheme}://")
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `text` is shown as `shown` and that none of `secrets` survives.
    fn check(text: &str, shown: &str, secrets: &[&str]) {
        let got = url(text);
        assert_eq!(got, shown, "{text}");
        for secret in secrets {
            assert!(!got.contains(secret), "{text} shows {secret:?}: {got}");
        }
    }

    #[test]
    fn masks_the_userinfo_password() {
        check(
            "postgres://u:LeakMe@h:5432/db",
            "postgres://u:***@h:5432/db",
            &["LeakMe"],
        );
        check(
            "http://AKIA:S3cret@127.0.0.1:9000",
            "http://AKIA:***@127.0.0.1:9000/",
            &["S3cret"],
        );
        check("postgres://:pw@h/db", "postgres://:***@h/db", &["pw"]);
        // An encoded `@` and `:` stay inside the password.
        check(
            "postgres://u:a%40b%3Ac@h/db",
            "postgres://u:***@h/db",
            &["a%40b"],
        );
    }

    #[test]
    fn masks_a_password_holding_an_unencoded_at_sign() {
        check(
            "postgres://u:LeakMe:Tail@@h/db",
            "postgres://u:***@h/db",
            &["LeakMe", "Tail"],
        );
        check(
            "postgres://u:pw@LeakMe:Tail@h/db",
            "postgres://u:***@h/db",
            &["pw", "LeakMe", "Tail"],
        );
    }

    #[test]
    fn masks_secret_query_parameters_in_any_case() {
        check(
            "postgres://u@h/db?password=Q1&sslmode=require",
            "postgres://u@h/db?password=***&sslmode=require",
            &["Q1"],
        );
        check(
            "postgres://u@h/db?sslmode=require&PassWord=Q2",
            "postgres://u@h/db?sslmode=require&PassWord=***",
            &["Q2"],
        );
        check(
            "postgres://u:pw@h/db?sslkey=/k.pem&api_key=Q3&X-Amz-Security-Token=Q4&SECRET=Q5",
            "postgres://u:***@h/db?sslkey=***&api_key=***&X-Amz-Security-Token=***&SECRET=***",
            &["pw", "k.pem", "Q3", "Q4", "Q5"],
        );
        // The name is matched decoded; a parameter without a value has nothing to hide.
        check(
            "s3://b/p?pass%77ord=Q6&token",
            "s3://b/p?pass%77ord=***&token",
            &["Q6"],
        );
    }

    #[test]
    fn unparsable_urls_show_scheme_and_host_only() {
        // A password holding `/` or `?`: the authority ends before its `@`.
        check("postgres://u:pa/ss@h/db", "postgres://", &["pa", "ss"]);
        check(
            "postgres://u:p?ss@h/db?password=x",
            "postgres://",
            &["p?ss", "x"],
        );
        // A bad port.
        check("postgres://u:pw@h:port/db", "postgres://h:port", &["pw"]);
        // libpq's host lists are no URL for the crate.
        check("postgres://u@h1:5432,h2/db", "postgres://h1:5432,h2", &[]);
        check(
            "postgres://u:pw@h1:5432,h2:5433/db?password=x",
            "postgres://h1:5432,h2:5433",
            &["pw", "=x"],
        );
        // No `//`: no authority, so an `@` could be anything.
        check("postgres:u:pw@h/db", "postgres:", &["pw"]);
        // An `@` after the authority: the drivers' split is not the crate's.
        check("postgres://u@h/db?application_name=a@b", "postgres://", &[]);
    }

    #[test]
    fn what_holds_no_secret_is_shown_as_given() {
        for text in [
            "postgres://u@h/db",
            "s3://bucket/some prefix/x",
            "s3://bucket",
            "http://127.0.0.1:9000",
            "postgres://u@h/db?sslmode=require&application_name=txflow",
            "sqlite:///tmp/a b/state.db",
            "/tmp/user@host/landing?x=1",
            "relative/landing",
            "landing",
            "",
        ] {
            assert_eq!(url(text), text);
        }
    }

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "PassWord",
            "sslkey",
            "api_key",
            "x-amz-security-token",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["sslmode", "application_name", "user", "host", "dbname"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
