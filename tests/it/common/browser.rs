//! Headless Chromium for the page tests (Debian's `chromium`, installed by
//! `scripts/ensure-tools.sh`; no network, no profile state). A missing browser fails the
//! test, it never skips.

use std::process::Command;
use std::time::Duration;

use super::process::ChildGuard;

/// Bound on one browser run.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs headless Chromium with `args` (then `url`) and returns its stdout.
pub fn chromium(args: &[&str], url: &str) -> String {
    chromium_with_env(args, url, &[])
}

/// [`chromium`] with environment variables set for the browser (e.g. `TZ`, to show that a
/// page does not depend on the browser's time zone).
pub fn chromium_with_env(args: &[&str], url: &str, env: &[(&str, &str)]) -> String {
    if Command::new("chromium").arg("--version").output().is_err() {
        panic!(
            "chromium is not installed: the browser tests need it \
             (scripts/ensure-tools.sh installs Debian's chromium package)"
        );
    }
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
        ])
        .args(["--no-first-run", "--disable-extensions", "--mute-audio"])
        .args(args)
        .arg(url)
        .envs(env.iter().copied());
    let what = format!("{command:?}");
    let finished = ChildGuard::spawn(command).wait(BROWSER_TIMEOUT);
    assert!(finished.status.success(), "{what}: {}", finished.describe());
    finished.stdout
}

/// The DOM of `url` after its scripts ran (`extra`: e.g. a virtual time budget for fetches).
pub fn dump_dom(url: &str, extra: &[&str]) -> String {
    dump_dom_with_env(url, extra, &[])
}

/// [`dump_dom`] with environment variables set for the browser.
pub fn dump_dom_with_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["--dump-dom"];
    args.extend_from_slice(extra);
    let dom = chromium_with_env(&args, url, env);
    assert!(dom.contains("</html>"), "no DOM from {url}: {dom}");
    dom
}
