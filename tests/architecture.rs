//! The shape of the library, checked on its source: no function over 100 lines outside the
//! binaries and tests, no dependency cycle among its files or its top-level modules (the
//! layers of docs/architecture.md point one way), and nothing in the library that ends the
//! process or installs a panic hook.

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

/// Every library file's imports: `a.rs` → the files whose items it names.
fn file_imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    library_files(&src(), &mut files);
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let from = relative(path);
        let code = absolute(&without_comments(&code_of(path)), &module_of(path));
        let targets = imports.entry(from.clone()).or_default();
        for target in crate_paths(&code).iter().filter_map(|p| file_of(p)) {
            let to = relative(&target);
            if to != from {
                targets.insert(to);
            }
        }
    }
    imports
}

/// The top-level module a file belongs to: `sinks/state/sqlite.rs` → `sinks`, `model.rs` → `model`.
fn top_level(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_string()
}

/// The same graph between top-level modules (a module's own files are one node).
fn module_imports(
    files: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in files {
        let entry = modules.entry(top_level(from)).or_default();
        entry.extend(
            targets
                .iter()
                .map(|t| top_level(t))
                .filter(|t| *t != top_level(from)),
        );
    }
    modules
}

/// The strongly connected components of a graph with more than one node (Tarjan's
/// algorithm): each is a cycle of dependencies, named by its members in order.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let at = self.index.len();
            self.index.insert(node, at);
            self.low.insert(node, at);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next.as_str()) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next.as_str()]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next.as_str()) {
                    let low = self.low[node].min(self.index[next.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_string());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}

/// One cycle named as a path through it, e.g. `a.rs → b.rs → a.rs`, for the failure message.
fn describe(component: &[String], graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let members: BTreeSet<&String> = component.iter().collect();
    let start = &component[0];
    // A shortest way back to the start inside the component (breadth first).
    let mut previous: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if !members.contains(next) || previous.contains_key(next) {
                continue;
            }
            previous.insert(next, node);
            if next == start {
                queue.clear();
                break;
            }
            queue.push_back(next);
        }
    }
    let mut path = vec![start.clone()];
    let mut node = start;
    while let Some(prev) = previous.get(node) {
        path.push((*prev).clone());
        node = prev;
        if node == start {
            break;
        }
    }
    path.reverse();
    format!("{} (members: {})", path.join(" → "), component.join(", "))
}

#[test]
fn no_cycle_among_library_files_or_top_level_modules() {
    let files = file_imports();
    assert!(
        files["mechanism_y.rs"].contains("runtime/committer.rs"),
        "the import finder must see mechanism_y's imports: {:?}",
        files["mechanism_y.rs"]
    );
    let modules = module_imports(&files);
    let found: Vec<String> = cycles(&modules)
        .iter()
        .map(|c| format!("modules: {}", describe(c, &modules)))
        .chain(
            cycles(&files)
                .iter()
                .map(|c| format!("files: {}", describe(c, &files))),
        )
        .collect();
    assert!(found.is_empty(), "dependency cycles: {found:#?}");
}

/// The layers of docs/architecture.md, in order: each row of its layer table (under
/// "## Layers") with the modules it names in backticks (`sinks/` → `sinks`, `sinks::state`
/// as written; `src/bin/` is not the library's).
fn documented_layers() -> Vec<(String, Vec<String>)> {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md holds the layer table");
    let section = doc.split("## Layers").nth(1).expect("a ## Layers section");
    let rows = section
        .lines()
        .skip_while(|l| !l.starts_with("| layer |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    rows.map(|row| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let modules = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|m| !m.starts_with("src/"))
            .map(|m| m.trim_end_matches('/').to_string())
            .collect();
        (cells[1].to_string(), modules)
    })
    .collect()
}

/// The documented module a file belongs to: its top-level module, or a second-level one
/// the table names on its own (`sinks/state/…` → `sinks::state`).
fn layer_module(file: &str, named: &BTreeSet<String>) -> String {
    let mut parts = file.trim_end_matches(".rs").split('/');
    let top = parts.next().unwrap_or_default().to_string();
    match parts.next() {
        Some(second) if named.contains(&format!("{top}::{second}")) => format!("{top}::{second}"),
        _ => top,
    }
}

#[test]
fn imports_point_down_the_documented_layers() {
    let layers = documented_layers();
    assert!(
        layers.len() >= 5,
        "the layer table was not found: {layers:?}"
    );
    let rank: BTreeMap<String, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (_, modules))| modules.iter().map(move |m| (m.clone(), i)))
        .collect();
    let named: BTreeSet<String> = rank.keys().cloned().collect();
    let files = file_imports();
    let mut wrong = Vec::new();
    for (from, targets) in &files {
        let source = layer_module(from, &named);
        if source == "lib" {
            continue;
        }
        let Some(&at) = rank.get(&source) else {
            wrong.push(format!(
                "{from}: module `{source}` is in no layer of docs/architecture.md"
            ));
            continue;
        };
        for to in targets {
            let target = layer_module(to, &named);
            if rank.get(&target).is_some_and(|&t| t > at) {
                wrong.push(format!(
                    "{from} ({}) imports {to} ({}), a later layer",
                    layers[at].0, layers[rank[&target]].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let chain = graph(&[("a", "b"), ("b", "c"), ("a", "c")]);
    assert!(cycles(&chain).is_empty());
    let long = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("d", "e")]);
    assert_eq!(cycles(&long), [["b", "c", "d"]]);
    assert_eq!(
        describe(&cycles(&long)[0], &long),
        "b → c → d → b (members: b, c, d)"
    );
    let two = graph(&[("x", "y"), ("y", "x"), ("p", "q"), ("q", "r"), ("r", "p")]);
    assert_eq!(cycles(&two).len(), 2);
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
