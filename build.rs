//! Sets `TXFLOW_COMMIT` for the crate: the commit it is built from (`git rev-parse
//! --short=12 HEAD`), or `TXFLOW_COMMIT` from the environment when set (a build from a
//! source archive, a container build), else `unknown`. Every binary's `--version` shows it.
//!
//! Cargo reruns this script only when HEAD or the branch it points to moves (the files named
//! below, found through `git rev-parse`, which also works in a worktree whose `.git` is a
//! file), or when `TXFLOW_COMMIT` changes; not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TXFLOW_COMMIT");
    let given = std::env::var("TXFLOW_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let commit = match given {
        Some(commit) => commit.trim().to_string(),
        None => {
            watch_git_head();
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=TXFLOW_COMMIT={commit}");
}

/// `git args…` in the crate's directory: its trimmed output, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// `cargo:rerun-if-changed` for HEAD (in the worktree's git directory), the branch it names
/// and `packed-refs` (both in the common directory).
fn watch_git_head() {
    let absolute = |p: String| -> Option<PathBuf> {
        let path = PathBuf::from(p);
        match path.is_absolute() {
            true => Some(path),
            false => Some(Path::new(&std::env::var_os("CARGO_MANIFEST_DIR")?).join(path)),
        }
    };
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).and_then(absolute) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"])
        .and_then(absolute)
        .unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
