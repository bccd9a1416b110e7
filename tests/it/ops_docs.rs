//! The alert rules and the dashboard shipped in `docs/ops/` (a Prometheus rule file and a
//! Grafana dashboard model) are well-formed, and every metric their queries name is one
//! mechanism-y serves: the names are taken from every PromQL expression (roughly tokenized:
//! identifiers that are not functions, keywords, label names or label values) and looked up
//! in the OpenMetrics text of a real [`Telemetry`] served by the real endpoint.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use txflow::http::HttpServer;
use txflow::telemetry::{RunInfo, Telemetry};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/ops")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names a scrape of a fresh run's endpoint holds: each sample's name and each family's
/// (`# TYPE` line), so that a family with no sample yet (a labelled one) still counts.
fn served_names() -> BTreeSet<String> {
    let telemetry = Arc::new(Telemetry::new(RunInfo::default(), Default::default()));
    let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), telemetry).unwrap();
    let (status, text) =
        common::http::get(server.local_addr().port(), "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{text}");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        names.extend(name.filter(|n| !n.is_empty()).map(String::from));
    }
    assert!(names.len() > 20, "{text}");
    names
}

/// Series Prometheus makes itself for every target (not served by the target).
const SYNTHETIC: [&str; 1] = ["up"];

/// The suffixes OpenMetrics adds to a family's name in its samples.
const SUFFIXES: [&str; 5] = ["_bucket", "_sum", "_count", "_total", "_created"];

/// Whether `name` is served: as a sample, a family, or a family with a sample suffix.
fn is_served(name: &str, served: &BTreeSet<String>) -> bool {
    served.contains(name)
        || SYNTHETIC.contains(&name)
        || SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| served.contains(family))
        })
}

/// Words of PromQL that are not metric names when they are not followed by `(`.
const KEYWORDS: [&str; 24] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "inf",
];

/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` uses: identifiers outside strings, label matchers (`{...}`),
/// ranges (`[...]`) and label lists, not numbers, and not followed by `(` (functions and
/// aggregations).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i += 1;
        }
        i + 1
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i + 1, c),
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (word(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if word(c) => {
                let start = i;
                while i < chars.len() && word(chars[i]) {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let after = next_non_space(i);
                let lower = ident.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) && chars.get(after) == Some(&'(') {
                    i = skip_to(after + 1, ')');
                } else if chars.get(after) != Some(&'(')
                    && !KEYWORDS.contains(&lower.as_str())
                    && lower != "nan"
                {
                    names.push(ident);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The names of `exprs` that are not served, each with the expression it came from.
fn unknown(exprs: &[String], served: &BTreeSet<String>) -> Vec<String> {
    exprs
        .iter()
        .flat_map(|expr| {
            metric_names(expr)
                .into_iter()
                .filter(|name| !is_served(name, served))
                .map(move |name| format!("{name} (in {expr:?})"))
        })
        .collect()
}

#[test]
fn the_tokenizer_finds_metric_names_only() {
    let expr = r#"sum by (instance, job, reason) (rate(txflow_rows_rejected_total{reason!="x y"}[5m]))
        / ignoring (reason) group_left sum by (instance, job) (rate(txflow_rows_accepted_total[5m])) > 1e-2
        and on (instance) time() - txflow_last_commit_timestamp_seconds offset 5m > 300
        unless histogram_quantile(0.95, sum by (le) (rate(txflow_epoch_commit_seconds_bucket[$__rate_interval]))) > bool 3"#;
    assert_eq!(
        metric_names(expr),
        [
            "txflow_rows_rejected_total",
            "txflow_rows_accepted_total",
            "txflow_last_commit_timestamp_seconds",
            "txflow_epoch_commit_seconds_bucket",
        ]
    );
}

#[test]
fn a_misspelt_metric_name_is_caught() {
    let served = served_names();
    let good = ["rate(txflow_rows_accepted_total[5m]) > 0".to_string()];
    assert!(unknown(&good, &served).is_empty(), "{served:?}");
    let misspelt = ["rate(txflow_rows_acepted_total[5m]) > 0".to_string()];
    let found = unknown(&misspelt, &served);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("txflow_rows_acepted_total "),
        "{found:?}"
    );
}

#[test]
fn every_alert_rule_is_complete_and_names_served_metrics() {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc("alerts.yml")).unwrap();
    let groups = rules["groups"].as_sequence().expect("groups: a list");
    let mut exprs = Vec::new();
    let mut alerts = BTreeSet::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        for rule in group["rules"].as_sequence().expect("rules: a list") {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            assert!(alerts.insert(alert.to_string()), "{alert} twice");
            let field = |key: &str| rule[key].as_str().map(str::trim).unwrap_or_default();
            assert!(!field("expr").is_empty(), "{alert}: no expr");
            assert!(!field("for").is_empty(), "{alert}: no for");
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("critical" | "warning")),
                "{alert}: severity {severity:?}"
            );
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or_default();
                assert!(!text.trim().is_empty(), "{alert}: no annotations.{key}");
            }
            exprs.push(field("expr").to_string());
        }
    }
    for needed in [
        "TxflowStalled",
        "TxflowFailed",
        "TxflowBehind",
        "TxflowNoInput",
        "TxflowNoCommit",
        "TxflowStateStoreRetries",
        "TxflowRejectSpike",
        "TxflowRestarting",
    ] {
        assert!(alerts.contains(needed), "no {needed}: {alerts:?}");
    }
    let missing = unknown(&exprs, &served_names());
    assert!(missing.is_empty(), "not served: {missing:#?}");
}

/// Every panel's queries, nested rows included.
fn panel_exprs(panels: &[Value], exprs: &mut Vec<String>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(panel["type"].is_string(), "panel {title:?} without a type");
        if let Some(targets) = panel["targets"].as_array() {
            assert!(
                panel["datasource"]["uid"] == "${datasource}",
                "panel {title:?}: not on the datasource variable"
            );
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "panel {title:?}: a target without expr"
                );
                exprs.push(expr.to_string());
            }
        }
        if let Some(inner) = panel["panels"].as_array() {
            panel_exprs(inner, exprs);
        }
    }
}

#[test]
fn the_dashboard_is_self_contained_and_names_served_metrics() {
    let text = doc("grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {variables:?}"
    );
    // Nothing to fetch from elsewhere and no datasource of the author's installation.
    for external in ["http://", "https://", "__inputs", "__requires", "${DS_"] {
        assert!(!text.contains(external), "{external} in the dashboard");
    }
    let mut exprs = Vec::new();
    panel_exprs(dashboard["panels"].as_array().unwrap(), &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let wanted = [
        "txflow_state",
        "txflow_lag_chunks",
        "txflow_rows_accepted_total",
        "txflow_visible_to_commit_seconds_bucket",
        "txflow_detections_total",
        "txflow_rows_rejected_total",
        "txflow_state_store_retries_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ];
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for name in wanted {
        assert!(used.contains(name), "no panel shows {name}");
    }
    let missing = unknown(&exprs, &served_names());
    assert!(missing.is_empty(), "not served: {missing:#?}");
}
