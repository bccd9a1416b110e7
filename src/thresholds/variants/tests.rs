use super::*;
use crate::thresholds::{Amount, Fraction};

/// A baseline unlike the defaults, so that "keys not set keep the baseline" is visible.
fn baseline() -> Thresholds {
    Thresholds {
        upgrade_min_merchant_txns: 1_000,
        upgrade_count_percentile: Fraction::from_millionths(950_000),
        upgrade_weight_percentile: Fraction::from_millionths(50_000),
        child_min_txns: 70,
        child_max_avg_amount: Amount::from_micros(25_000_000),
        dei_min_female_customers: 90,
    }
}

fn flags(specs: &[&str]) -> Vec<String> {
    specs.iter().map(|s| s.to_string()).collect()
}

fn of_flags(variants: &[&str], sweeps: &[&str]) -> Result<Vec<Variant>, VariantOptionError> {
    resolve(&baseline(), None, &flags(variants), &flags(sweeps)).map(|r| r.variants)
}

fn of_toml(text: &str) -> Result<Vec<Variant>, VariantOptionError> {
    resolve(&baseline(), Some(("v.toml", text)), &[], &[]).map(|r| r.variants)
}

/// The problem of an `Invalid` error, and its place.
fn problem_of<T: std::fmt::Debug>(result: Result<T, VariantOptionError>) -> (String, Problem) {
    match result {
        Err(VariantOptionError::Invalid { place, problem }) => (place, problem),
        other => panic!("expected an invalid option, got {other:?}"),
    }
}

fn names(variants: &[Variant]) -> Vec<&str> {
    variants.iter().map(|v| v.name.as_str()).collect()
}

#[test]
fn a_variant_flag_sets_its_keys_and_keeps_the_baseline_for_the_others() {
    let got = of_flags(&["strict:child-min-txns=100,child-max-avg-amount=20"], &[]).unwrap();
    let mut expected = baseline();
    expected.child_min_txns = 100;
    expected.child_max_avg_amount = Amount::from_micros(20_000_000);
    assert_eq!(
        got,
        vec![Variant {
            name: "strict".into(),
            thresholds: expected
        }]
    );
    let all = "all:upgrade-min-merchant-txns=7,upgrade-count-percentile=0.5,\
               upgrade-weight-percentile=0.000001,child-min-txns=0,\
               child-max-avg-amount=12.345678,dei-min-female-customers=3";
    let got = of_flags(&[all], &[]).unwrap();
    let expected = Thresholds {
        upgrade_min_merchant_txns: 7,
        upgrade_count_percentile: Fraction::from_millionths(500_000),
        upgrade_weight_percentile: Fraction::from_millionths(1),
        child_min_txns: 0,
        child_max_avg_amount: Amount::from_micros(12_345_678),
        dei_min_female_customers: 3,
    };
    assert_eq!(got[0].thresholds, expected);
}

#[test]
fn variant_flag_syntax_errors() {
    for spec in [
        "strict",
        "strict:",
        "strict:child-min-txns",
        "strict:child-min-txns=1,",
    ] {
        let (place, problem) = problem_of(of_flags(&[spec], &[]));
        assert_eq!(place, "--variant", "{spec}");
        assert_eq!(problem, Problem::VariantSyntax { spec: spec.into() });
    }
    let (_, problem) = problem_of(of_flags(&[":child-min-txns=1"], &[]));
    assert!(matches!(problem, Problem::Name { ref name, .. } if name.is_empty()));
}

#[test]
fn variant_names() {
    for good in ["a", "v1.2_x-Y", "0", "a..b", &"n".repeat(64)] {
        assert_eq!(
            VariantName::parse(good).map(|n| n.as_str().to_string()),
            Ok(good.to_string()),
            "{good}"
        );
    }
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "a b",
        "é",
        "baseline",
        "BaseLine",
        &"n".repeat(65),
    ] {
        assert!(VariantName::parse(bad).is_err(), "{bad:?}");
        let spec = format!("{bad}:child-min-txns=1");
        let (place, problem) = problem_of(of_flags(&[&spec], &[]));
        assert_eq!(place, "--variant");
        assert!(
            matches!(problem, Problem::Name { ref name, .. } if name == bad),
            "{problem:?}"
        );
    }
    let (place, problem) = problem_of(of_toml("[\"a b\"]\nchild-min-txns = 1\n"));
    assert_eq!(place, "--variants v.toml");
    assert!(matches!(problem, Problem::Name { ref name, .. } if name == "a b"));
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let (place, problem) = problem_of(of_flags(&["s:child-min-txn=1"], &[]));
    assert_eq!(place, "--variant s");
    assert_eq!(
        problem,
        Problem::UnknownKey {
            key: "child-min-txn".into()
        }
    );
    let message = problem.to_string();
    for key in [
        "upgrade-min-merchant-txns",
        "upgrade-count-percentile",
        "upgrade-weight-percentile",
        "child-min-txns",
        "child-max-avg-amount",
        "dei-min-female-customers",
    ] {
        assert!(message.contains(key), "{message}");
    }
    // The flag's own name, with its dashes, is not a key.
    let (_, problem) = problem_of(of_flags(&["s:--child-min-txns=1"], &[]));
    assert!(matches!(problem, Problem::UnknownKey { .. }));
    let (_, problem) = problem_of(of_flags(&[], &["child-min=1..2/1"]));
    assert!(matches!(problem, Problem::UnknownKey { ref key } if key == "child-min"));
    let (place, problem) = problem_of(of_toml("[s]\nfoo = true\n"));
    assert_eq!(place, "--variants v.toml [s]");
    assert!(matches!(problem, Problem::UnknownKey { ref key } if key == "foo"));
}

#[test]
fn a_key_set_twice_is_refused() {
    let (place, problem) = problem_of(of_flags(&["s:child-min-txns=1,child-min-txns=1"], &[]));
    assert_eq!(place, "--variant s");
    assert_eq!(
        problem,
        Problem::KeySetTwice {
            key: "child-min-txns"
        }
    );
}

#[test]
fn invalid_values_name_the_variant_the_key_and_the_value() {
    let cases = [
        ("child-min-txns", "-1"),
        ("child-min-txns", "1.5"),
        ("child-min-txns", "18446744073709551616"),
        ("dei-min-female-customers", ""),
        ("upgrade-min-merchant-txns", "ten"),
        ("upgrade-count-percentile", "1.5"),
        ("upgrade-count-percentile", "0.1234567"),
        ("upgrade-weight-percentile", "-0.1"),
        ("child-max-avg-amount", "-1"),
        ("child-max-avg-amount", "1e3"),
        ("child-max-avg-amount", "NaN"),
        ("child-max-avg-amount", "1000000000000"),
    ];
    for (key, value) in cases {
        let spec = format!("loose:{key}={value}");
        let error = of_flags(&[&spec], &[]).unwrap_err();
        let line = error.to_string();
        assert!(
            line.starts_with(&format!("--variant loose: {key}: \"{value}\"")),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

#[test]
fn duplicate_names_across_all_three_options() {
    let toml = "[a]\nchild-min-txns = 1\n";
    let dup = |variants: &[&str], sweeps: &[&str]| {
        problem_of(resolve(
            &baseline(),
            Some(("v.toml", toml)),
            &flags(variants),
            &flags(sweeps),
        ))
    };
    let (place, problem) = dup(&["A:child-min-txns=2"], &[]);
    assert_eq!(place, "--variant");
    assert_eq!(
        problem,
        Problem::Duplicate {
            name: "A".into(),
            first: "--variants v.toml".into()
        }
    );
    let (place, problem) = dup(
        &["child-min-txns-5:child-min-txns=2"],
        &["child-min-txns=1..9/2"],
    );
    assert_eq!(place, "--sweep child-min-txns=1..9/2");
    assert!(matches!(problem, Problem::Duplicate { ref first, .. } if first == "--variant"));
    let (_, problem) = dup(&[], &["child-min-txns=1..2/1", "child-min-txns=2..3/1"]);
    assert!(matches!(problem, Problem::Duplicate { ref name, .. } if name == "child-min-txns-2"));
    let (_, problem) = dup(&["b:child-min-txns=1", "b:child-min-txns=2"], &[]);
    assert!(matches!(problem, Problem::Duplicate { ref name, .. } if name == "b"));
}

#[test]
fn at_most_32_variants_in_all() {
    let specs: Vec<String> = (0..20)
        .map(|i| format!("v{i}:child-min-txns={i}"))
        .collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    // 20 flags + 12 sweep values = 32.
    let got = of_flags(&specs, &["dei-min-female-customers=1..12/1"]).unwrap();
    assert_eq!(got.len(), 32);
    assert_eq!(
        of_flags(&specs, &["dei-min-female-customers=1..13/1"]),
        Err(VariantOptionError::TooMany { count: 33 })
    );
    let toml: String = (0..33)
        .map(|i| format!("[t{i}]\nchild-min-txns = {i}\n"))
        .collect();
    assert_eq!(
        of_toml(&toml),
        Err(VariantOptionError::TooMany { count: 33 })
    );
}

#[test]
fn order_is_file_then_variant_flags_then_sweeps_ascending() {
    let toml = "[zeta]\nchild-min-txns = 1\n[alpha]\nchild-min-txns = 2\n[mid]\n";
    let got = resolve(
        &baseline(),
        Some(("v.toml", toml)),
        &flags(&["z2:child-min-txns=3", "a2:child-min-txns=4"]),
        &flags(&["child-min-txns=9..10/1"]),
    )
    .unwrap();
    assert_eq!(
        names(&got.variants),
        [
            "zeta",
            "alpha",
            "mid",
            "z2",
            "a2",
            "child-min-txns-9",
            "child-min-txns-10"
        ]
    );
    let txns: Vec<u64> = got
        .variants
        .iter()
        .map(|v| v.thresholds.child_min_txns)
        .collect();
    assert_eq!(txns, [1, 2, 70, 3, 4, 9, 10]);
}

#[test]
fn an_integer_sweep_is_inclusive_and_named_key_value() {
    let got = of_flags(&[], &["child-min-txns=60..120/20"]).unwrap();
    assert_eq!(
        names(&got),
        [
            "child-min-txns-60",
            "child-min-txns-80",
            "child-min-txns-100",
            "child-min-txns-120"
        ]
    );
    for (variant, expected) in got.iter().zip([60, 80, 100, 120]) {
        let mut thresholds = baseline();
        thresholds.child_min_txns = expected;
        assert_eq!(variant.thresholds, thresholds, "{}", variant.name);
    }
    // The end is included only when a step lands on it.
    let got = of_flags(&[], &["upgrade-min-merchant-txns=0..119/40"]).unwrap();
    let values: Vec<u64> = got
        .iter()
        .map(|v| v.thresholds.upgrade_min_merchant_txns)
        .collect();
    assert_eq!(values, [0, 40, 80]);
    let single = of_flags(&[], &["dei-min-female-customers=5..5/3"]).unwrap();
    assert_eq!(names(&single), ["dei-min-female-customers-5"]);
}

#[test]
fn a_decimal_sweep_steps_exactly() {
    // In binary floating point 0.1 + 0.1 + 0.1 > 0.3: a float sweep would lose 0.3.
    let got = of_flags(&[], &["child-max-avg-amount=0.1..0.3/0.1"]).unwrap();
    let micros: Vec<i64> = got
        .iter()
        .map(|v| v.thresholds.child_max_avg_amount.micros)
        .collect();
    assert_eq!(micros, [100_000, 200_000, 300_000]);
    assert_eq!(
        names(&got),
        [
            "child-max-avg-amount-0.1",
            "child-max-avg-amount-0.2",
            "child-max-avg-amount-0.3"
        ]
    );
    let got = of_flags(&[], &["upgrade-count-percentile=0..1/0.05"]).unwrap();
    assert_eq!(got.len(), 21);
    let millionths: Vec<u32> = got
        .iter()
        .map(|v| v.thresholds.upgrade_count_percentile.millionths)
        .collect();
    let expected: Vec<u32> = (0..=20).map(|i| i * 50_000).collect();
    assert_eq!(millionths, expected);
    assert_eq!(got[0].name, "upgrade-count-percentile-0");
    assert_eq!(got[17].name, "upgrade-count-percentile-0.85");
    assert_eq!(got[20].name, "upgrade-count-percentile-1");
    // Untouched keys keep the baseline.
    assert!(got
        .iter()
        .all(|v| v.thresholds.upgrade_weight_percentile == baseline().upgrade_weight_percentile));
    let got = of_flags(
        &[],
        &["upgrade-weight-percentile=0.000001..0.000003/0.000001"],
    );
    assert_eq!(
        names(&got.unwrap()),
        [
            "upgrade-weight-percentile-0.000001",
            "upgrade-weight-percentile-0.000002",
            "upgrade-weight-percentile-0.000003"
        ]
    );
    let got = of_flags(&[], &["child-max-avg-amount=19.5..21/0.75"]).unwrap();
    assert_eq!(
        names(&got),
        [
            "child-max-avg-amount-19.5",
            "child-max-avg-amount-20.25",
            "child-max-avg-amount-21"
        ]
    );
}

#[test]
fn sweep_errors() {
    let sweep_problem = |spec: &str| {
        let (place, problem) = problem_of(of_flags(&[], &[spec]));
        assert_eq!(place, format!("--sweep {spec}"));
        problem
    };
    for spec in [
        "child-min-txns",
        "child-min-txns=60..120",
        "child-min-txns=60/20",
        "60..120/20",
    ] {
        assert_eq!(
            sweep_problem(spec),
            Problem::SweepSyntax { spec: spec.into() }
        );
    }
    assert_eq!(
        sweep_problem("child-min-txns=120..60/20"),
        Problem::EmptyRange {
            from: "120".into(),
            to: "60".into()
        }
    );
    assert!(matches!(
        sweep_problem("upgrade-count-percentile=0.9..0.8/0.1"),
        Problem::EmptyRange { .. }
    ));
    for (spec, step) in [
        ("child-min-txns=1..5/0", "0"),
        ("child-min-txns=1..5/-1", "-1"),
        ("child-max-avg-amount=1..5/0.0", "0.0"),
        ("child-max-avg-amount=1..5/-0.5", "-0.5"),
        ("child-min-txns=1..5/0.5", "0.5"),
        ("child-min-txns=1..5/", ""),
    ] {
        assert_eq!(
            sweep_problem(spec),
            Problem::Step { step: step.into() },
            "{spec}"
        );
    }
    assert_eq!(
        sweep_problem("child-min-txns=1..65/1"),
        Problem::SweepTooLong { count: 65 }
    );
    assert_eq!(
        sweep_problem("child-min-txns=0..18446744073709551615/1"),
        Problem::SweepTooLong {
            count: u128::from(u64::MAX) + 1
        }
    );
    assert_eq!(
        sweep_problem("upgrade-count-percentile=0..1/0.01"),
        Problem::SweepTooLong { count: 101 }
    );
    // 64 values are one sweep's most, but more than a run's variants.
    assert_eq!(
        of_flags(&[], &["child-min-txns=1..64/1"]),
        Err(VariantOptionError::TooMany { count: 64 })
    );
    for spec in [
        "upgrade-count-percentile=0.5..1.5/0.1",
        "child-max-avg-amount=x..2/1",
    ] {
        assert!(
            matches!(sweep_problem(spec), Problem::Value { .. }),
            "{spec}"
        );
    }
}

#[test]
fn toml_value_kinds() {
    let toml = "[ints]\nchild-min-txns = 100\nupgrade-min-merchant-txns = 1_000\n\
                dei-min-female-customers = 0x10\n\
                [floats]\nupgrade-count-percentile = 0.85\nchild-max-avg-amount = 999999999999.999999\n\
                upgrade-weight-percentile = 0.0_5\n\
                [strings]\nchild-min-txns = \"100\"\nupgrade-count-percentile = '0.85'\n\
                child-max-avg-amount = \"20\"\n\
                [int-for-decimal]\nchild-max-avg-amount = 20\nupgrade-count-percentile = 1\n";
    let got = of_toml(toml).unwrap();
    assert_eq!(
        names(&got),
        ["ints", "floats", "strings", "int-for-decimal"]
    );
    let expect = |change: &dyn Fn(&mut Thresholds)| {
        let mut thresholds = baseline();
        change(&mut thresholds);
        thresholds
    };
    assert_eq!(
        got[0].thresholds,
        expect(&|t| {
            t.child_min_txns = 100;
            t.upgrade_min_merchant_txns = 1_000;
            t.dei_min_female_customers = 16;
        })
    );
    // As written, not through f64 (which has no 0.85, nor 18 significant digits).
    assert_eq!(
        got[1].thresholds,
        expect(&|t| {
            t.upgrade_count_percentile = Fraction::from_millionths(850_000);
            t.child_max_avg_amount = Amount::from_micros(999_999_999_999_999_999);
            t.upgrade_weight_percentile = Fraction::from_millionths(50_000);
        })
    );
    assert_eq!(
        got[2].thresholds,
        expect(&|t| {
            t.child_min_txns = 100;
            t.upgrade_count_percentile = Fraction::from_millionths(850_000);
            t.child_max_avg_amount = Amount::from_micros(20_000_000);
        })
    );
    assert_eq!(
        got[3].thresholds,
        expect(&|t| {
            t.child_max_avg_amount = Amount::from_micros(20_000_000);
            t.upgrade_count_percentile = Fraction::from_millionths(1_000_000);
        })
    );
    // As `--child-min-txns 18446744073709551615` takes it.
    let most = of_toml("[most]\nchild-min-txns = 0xFFFF_FFFF_FFFF_FFFF\n").unwrap();
    assert_eq!(most[0].thresholds.child_min_txns, u64::MAX);
}

#[test]
fn counts_take_the_whole_u64_range_and_refuse_anything_past_it() {
    let most = u64::MAX.to_string();
    let flag = format!("off:upgrade-min-merchant-txns={most},child-min-txns={most}");
    let flag = format!("{flag},dei-min-female-customers=9223372036854775808");
    let got = of_flags(&[&flag], &[]).unwrap();
    assert_eq!(got[0].thresholds.upgrade_min_merchant_txns, u64::MAX);
    assert_eq!(got[0].thresholds.child_min_txns, u64::MAX);
    assert_eq!(got[0].thresholds.dei_min_female_customers, 1 << 63);
    // In the file as a number (past TOML's i64 too: kept as written) or as a string.
    let toml = format!("[a]\nchild-min-txns = {most}\n[b]\nchild-min-txns = \"{most}\"\n");
    let got = of_toml(&toml).unwrap();
    assert!(got.iter().all(|v| v.thresholds.child_min_txns == u64::MAX));
    let (_, problem) = problem_of(of_toml("[c]\nchild-min-txns = 18446744073709551616\n"));
    assert!(problem.to_string().contains(&most), "{problem}");
    let sweep = format!("child-min-txns=18446744073709551614..{most}/1");
    let got = of_flags(&[], &[&sweep]).unwrap();
    let values: Vec<u64> = got.iter().map(|v| v.thresholds.child_min_txns).collect();
    assert_eq!(values, [u64::MAX - 1, u64::MAX]);
    for value in ["-1", "18446744073709551616", "99999999999999999999999"] {
        let spec = format!("s:dei-min-female-customers={value}");
        let (place, problem) = problem_of(of_flags(&[&spec], &[]));
        assert_eq!(place, "--variant s");
        let reason = format!("{value:?} is not a whole number from 0 to {most}");
        assert_eq!(
            problem,
            Problem::Value {
                key: "dei-min-female-customers",
                reason
            }
        );
        let sweep = format!("child-min-txns=0..{value}/1");
        let (_, problem) = problem_of(of_flags(&[], &[&sweep]));
        assert!(
            problem.to_string().contains(&most),
            "names the range: {problem}"
        );
    }
}

#[test]
fn toml_values_the_options_refuse() {
    // What `--child-min-txns` refuses, the file refuses too (100.0 is not a whole number).
    let refused = [
        ("child-min-txns = 100.0", "child-min-txns"),
        ("child-min-txns = -1", "child-min-txns"),
        ("child-min-txns = \"1e2\"", "child-min-txns"),
        (
            "upgrade-count-percentile = 1e-1",
            "upgrade-count-percentile",
        ),
        (
            "upgrade-count-percentile = 0.1234567",
            "upgrade-count-percentile",
        ),
        ("child-max-avg-amount = nan", "child-max-avg-amount"),
        ("child-max-avg-amount = -inf", "child-max-avg-amount"),
        ("child-max-avg-amount = +2.5", "child-max-avg-amount"),
        ("child-min-txns = 0x1_0000_0000_0000_0000", "child-min-txns"),
    ];
    for (line, key) in refused {
        let (place, problem) = problem_of(of_toml(&format!("[s]\n{line}\n")));
        assert_eq!(place, "--variants v.toml [s]", "{line}");
        assert!(
            matches!(problem, Problem::Value { key: k, .. } if k == key),
            "{line}: {problem:?}"
        );
    }
    let kinds = [
        ("child-min-txns = true", "a boolean"),
        ("child-min-txns = [1, 2]", "an array"),
        ("child-min-txns = 1979-05-27", "a date-time"),
        ("child-min-txns = { a = 1 }", "a table"),
    ];
    for (line, kind) in kinds {
        let (_, problem) = problem_of(of_toml(&format!("[s]\n{line}\n")));
        assert_eq!(
            problem,
            Problem::ValueKind {
                key: "child-min-txns",
                kind
            },
            "{line}"
        );
    }
}

#[test]
fn toml_file_errors() {
    let (place, problem) = problem_of(of_toml("child-min-txns = 100\n[s]\n"));
    assert_eq!(place, "--variants v.toml");
    assert_eq!(
        problem,
        Problem::NotATable {
            entry: "child-min-txns".into()
        }
    );
    let (place, problem) = problem_of(of_toml("[a]\nchild-min-txns = 1\n[b\n"));
    assert_eq!(place, "--variants v.toml");
    assert!(
        matches!(
            problem,
            Problem::Toml {
                line: 3,
                column: 3,
                ..
            }
        ),
        "{problem:?}"
    );
    let (_, problem) = problem_of(of_toml("[a]\nchild-min-txns = 1\nchild-min-txns = 2\n"));
    assert!(
        matches!(problem, Problem::Toml { line: 3, .. }),
        "{problem:?}"
    );
    // A nested table is a key of its parent's variant.
    let (_, problem) = problem_of(of_toml("[a.b]\nchild-min-txns = 1\n"));
    assert_eq!(problem, Problem::UnknownKey { key: "b".into() });
    assert!(of_toml("").unwrap().is_empty());
    for error in [
        of_toml("[a]\nchild-min-txns = \"x\\ny\"\n").unwrap_err(),
        of_toml("[a\n\n").unwrap_err(),
    ] {
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }
}

#[test]
fn identical_variants_are_allowed_with_a_warning() {
    let toml = "[control]\n[same-as-baseline]\nchild-min-txns = 70\n";
    let got = resolve(
        &baseline(),
        Some(("v.toml", toml)),
        &flags(&[
            "strict:child-min-txns=100",
            "strict2:child-min-txns=100",
            "other:child-min-txns=101",
        ]),
        &flags(&["child-min-txns=100..101/1"]),
    )
    .unwrap();
    assert_eq!(got.variants.len(), 7);
    assert_eq!(got.warnings.len(), 5, "{:#?}", got.warnings);
    let warned = |name: &str, also: &str| {
        got.warnings
            .iter()
            .any(|w| w.contains(&format!("{name:?}")) && w.contains(also))
    };
    assert!(warned("control", "baseline"));
    assert!(warned("same-as-baseline", "baseline"));
    assert!(warned("strict2", "\"strict\""));
    assert!(warned("child-min-txns-100", "\"strict\""));
    assert!(warned("child-min-txns-101", "\"other\""));
    let distinct = resolve(
        &baseline(),
        None,
        &flags(&["a:child-min-txns=1", "b:child-min-txns=2"]),
        &[],
    )
    .unwrap();
    assert_eq!(distinct.variants.len(), 2);
    assert_eq!(distinct.warnings, Vec::<String>::new());
}

#[test]
fn error_lines_name_the_option() {
    let line = |r: Result<Vec<Variant>, VariantOptionError>| r.unwrap_err().to_string();
    assert_eq!(
        line(of_flags(&["strict:child-min-txns=abc"], &[])),
        "--variant strict: child-min-txns: \"abc\" is not a whole number from 0 to \
         18446744073709551615"
    );
    assert_eq!(
        line(of_flags(&[], &["child-min-txns=1..5/0"])),
        "--sweep child-min-txns=1..5/0: the step \"0\" must be positive"
    );
}
