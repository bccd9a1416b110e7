//! The shape of the library, checked on its source (issue "One architecture you can see"):
//! no function over 100 lines outside the binaries and tests, no two files that import each
//! other, and nothing in the library that ends the process or installs a panic hook.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a library function may be, in lines from `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 100;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, except the binaries.
fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "bin" {
                library_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The file's text before its `#[cfg(test)]` module (unit tests may be long and import
/// freely).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

/// Each function's name and length, found by rustfmt's layout: a line starting (after its
/// indentation) with `fn`/`pub fn`/…, and the first later line that is that indentation
/// followed by `}`.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rest = ["pub(crate) ", "pub ", "const ", "async ", "unsafe "]
            .iter()
            .fold(trimmed, |t, p| t.strip_prefix(p).unwrap_or(t));
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let closing = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == closing) {
            found.push((name, i + 1, end + 2));
        }
    }
    found
}

#[test]
fn no_library_function_is_over_100_lines() {
    let mut files = Vec::new();
    library_files(&src(), &mut files);
    let mut long = Vec::new();
    for path in &files {
        for (name, line, length) in functions(&code_of(path)) {
            if length > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line} {name} ({length} lines)", relative(path)));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
}

#[test]
fn the_function_finder_sees_long_functions() {
    let body = "    let x = 1;\n".repeat(120);
    let code = format!("pub fn long() {{\n{body}}}\n\nfn short() {{\n}}\n");
    let found = functions(&code);
    assert_eq!(found[0], ("long".to_string(), 1, 122));
    assert_eq!(found[1], ("short".to_string(), 124, 2));
}

/// Expands the paths of one `use` tree: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.trim_end_matches("::").to_string(),
            _ => format!("{prefix}{p}"),
        })
        .collect()
}

/// The code without its comment lines (doc comments name other modules' items freely).
fn without_comments(code: &str) -> String {
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `crate::a::b`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut segments: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into()).collect();
    if segments.last().is_some_and(|s| s == "mod" || s == "lib") {
        segments.pop();
    }
    segments
}

/// `super::` and `self::` paths written as `crate::` paths.
fn absolute(code: &str, module: &[String]) -> String {
    let parent = module[..module.len().saturating_sub(1)].join("::");
    let own = module.join("::");
    let root = |m: &str| match m.is_empty() {
        true => "crate::".to_string(),
        false => format!("crate::{m}::"),
    };
    let code = code
        .replace("super::", &root(&parent))
        .replace("use self::", &format!("use {}", root(&own)));
    children(&code).iter().fold(code.clone(), |code, child| {
        qualify(&code, child, &root(&own))
    })
}

/// The modules a file declares (`mod a;`, `pub mod a;`).
fn children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_string())
        })
        .collect()
}

/// `child::x` (not preceded by another path segment) written as `{root}child::x`.
fn qualify(code: &str, child: &str, root: &str) -> String {
    let needle = format!("{child}::");
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        out.push_str(&rest[..at]);
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(root);
        }
        out.push_str(&needle);
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

/// The module paths (`crate::a::b…`) a file's code names: its `use` trees, expanded, and
/// every other `crate::` path.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use crate::") {
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        paths.extend(expand(&rest[at + 4..end]));
        rest = &rest[end..];
    }
    for (at, _) in code.match_indices("crate::") {
        let path: String = code[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        paths.push(path.trim_end_matches(':').to_string());
    }
    paths
}

/// The file a module path ends in: the longest prefix that is a module file.
fn file_of(path: &str) -> Option<PathBuf> {
    let segments: Vec<&str> = path.split("::").skip(1).collect();
    (1..=segments.len()).rev().find_map(|n| {
        let module = src().join(segments[..n].join("/"));
        [module.with_extension("rs"), module.join("mod.rs")]
            .into_iter()
            .find(|f| f.is_file())
    })
}

#[test]
fn no_two_library_files_import_each_other() {
    let mut files = Vec::new();
    library_files(&src(), &mut files);
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let from = relative(path);
        let code = absolute(&without_comments(&code_of(path)), &module_of(path));
        for target in crate_paths(&code).iter().filter_map(|p| file_of(p)) {
            let to = relative(&target);
            if to != from {
                imports.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mutual: Vec<String> = imports
        .iter()
        .flat_map(|(a, targets)| {
            targets
                .iter()
                .filter(|b| *a < **b && imports.get(*b).is_some_and(|t| t.contains(a)))
                .map(move |b| format!("{a} <-> {b}"))
        })
        .collect();
    assert!(mutual.is_empty(), "files importing each other: {mutual:#?}");
    assert!(
        imports["mechanism_y.rs"].contains("runtime/committer.rs"),
        "the import finder must see mechanism_y's imports: {:?}",
        imports["mechanism_y.rs"]
    );
}

#[test]
fn use_trees_expand_to_every_path() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}, self}"),
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a"
        ]
    );
}

#[test]
fn the_library_never_ends_the_process() {
    let mut files = Vec::new();
    library_files(&src(), &mut files);
    let forbidden = ["process::exit", "panic::set_hook", "std::process::abort"];
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let code = code_of(path);
            forbidden
                .iter()
                .filter(|f| {
                    code.lines()
                        .any(|l| !l.trim_start().starts_with("//") && l.contains(*f))
                })
                .map(|f| format!("{} calls {f}", relative(path)))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}
