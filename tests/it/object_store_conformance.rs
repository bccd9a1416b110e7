//! One conformance suite for every [`ObjectStore`]: each check below is a function of
//! `&dyn ObjectStore`, run against a `LocalStore` in a temporary directory and against the
//! real `S3Store` talking to the in-process S3 server (s3s + s3s-fs, see `common::s3`).
//!
//! The stores must agree on round trips, missing keys, overwrites, conditional creates and
//! listings (every key under the prefix at any depth, ascending byte order, `start_after`
//! exclusive, at most `limit`). Where they legitimately differ the check asserts each store's
//! documented value: `atomic_puts` (S3 only), `as_local` (the local store only, with its
//! directory, write probe and temporary files (`.tmp-*`)), which S3 has none of.
//!
//! s3s-fs cannot store a key that is both an object and a "directory" (`a` and `a/b`), and
//! neither can a directory: the key sets avoid that.

// Helpers of the tests that need a service are unused without it.
#![cfg_attr(not(feature = "test-services"), allow(dead_code, unused_imports))]

use crate::common;

use common::s3::S3Server;
use txflow::objectstore::local::LocalStore;
use txflow::objectstore::s3::S3Store;
use txflow::objectstore::{as_local, ObjectMeta, ObjectStore, PutOutcome};

/// Which store a check runs against, for the checks where they legitimately differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Local,
    S3,
}

fn keys(metas: &[ObjectMeta]) -> Vec<String> {
    metas.iter().map(|m| m.key.clone()).collect()
}

fn list(store: &dyn ObjectStore, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    keys(&store.list(prefix, after, limit).unwrap())
}

/// `keys` sorted by bytes, as the trait promises; computed here, not by the store.
fn sorted(keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out
}

/// A store of each kind; the guard keeps its directory or server alive.
fn with_store(kind: Kind, check: fn(&dyn ObjectStore, Kind)) {
    match kind {
        Kind::Local => {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::new(dir.path().join("root"));
            check(&store, kind);
        }
        Kind::S3 => {
            let server = S3Server::start();
            server.create_bucket("conformance");
            // A store below a prefix, beside a sibling prefix sharing its first bytes: keys
            // come back relative to the store's prefix and the sibling is never listed.
            let store = S3Store::connect(
                "conformance".into(),
                "run/landing".into(),
                &server.options(),
            )
            .expect("connect");
            store.check().unwrap();
            let sibling = S3Store::connect(
                "conformance".into(),
                "run/landingx".into(),
                &server.options(),
            )
            .expect("connect");
            sibling.put("chunk-000001.csv", b"sibling").unwrap();
            sibling.put("a.csv", b"sibling").unwrap();
            check(&store, kind);
        }
    }
}

/// Generates, for each check, a test against each store.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod local {
            $(#[test]
            fn $check() {
                super::with_store(super::Kind::Local, super::$check);
            })*
        }
        #[cfg(feature = "test-services")]
        mod s3 {
            $(#[test]
            fn $check() {
                super::with_store(super::Kind::S3, super::$check);
            })*
        }
    };
}

conformance!(
    put_get_head_round_trip,
    missing_keys_are_none,
    put_overwrites,
    put_if_absent_creates_once,
    lists_every_key_under_the_prefix_at_any_depth,
    lists_in_byte_order_not_numeric_order,
    start_after_is_exclusive,
    limit_and_pagination,
    temporaries_are_never_listed,
    documented_differences,
);

fn put_get_head_round_trip(store: &dyn ObjectStore, _: Kind) {
    let body = b"a,b,c\n1,2,3\n";
    store.put("chunk-000001.csv", body).unwrap();
    let object = store.get("chunk-000001.csv").unwrap().expect("object");
    assert_eq!(&object.body[..], body);
    assert_eq!(object.meta.key, "chunk-000001.csv");
    assert_eq!(object.meta.size, body.len() as u64);
    assert!(object.meta.last_modified_ms > 0);
    let head = store.head("chunk-000001.csv").unwrap().expect("head");
    assert_eq!(head.key, "chunk-000001.csv");
    assert_eq!(head.size, body.len() as u64);
    assert!(head.last_modified_ms > 0);

    // A nested key, and an empty object.
    store
        .put("rejects/chunk-000001.csv", b"rejected\n")
        .unwrap();
    let nested = store.get("rejects/chunk-000001.csv").unwrap().unwrap();
    assert_eq!(&nested.body[..], b"rejected\n");
    assert_eq!(nested.meta.key, "rejects/chunk-000001.csv");
    assert_eq!(
        store
            .head("rejects/chunk-000001.csv")
            .unwrap()
            .unwrap()
            .size,
        9
    );
    store.put("empty", b"").unwrap();
    assert!(store.get("empty").unwrap().unwrap().body.is_empty());
    assert_eq!(store.head("empty").unwrap().unwrap().size, 0);
    // Listing reports the same metadata.
    let listed = store.list("", None, 10).unwrap();
    assert_eq!(
        keys(&listed),
        ["chunk-000001.csv", "empty", "rejects/chunk-000001.csv"]
    );
    assert_eq!(listed[0].size, body.len() as u64);
    assert_eq!(listed[1].size, 0);
    assert_eq!(listed[2].size, 9);
    assert!(listed.iter().all(|m| m.last_modified_ms > 0));
}

fn missing_keys_are_none(store: &dyn ObjectStore, _: Kind) {
    assert!(store.get("chunk-000001.csv").unwrap().is_none());
    assert!(store.head("chunk-000001.csv").unwrap().is_none());
    assert!(store.get("rejects/chunk-000001.csv").unwrap().is_none());
    assert!(store.head("rejects/chunk-000001.csv").unwrap().is_none());
    assert!(store.list("", None, 10).unwrap().is_empty());
    store.put("rejects/chunk-000002.csv", b"x").unwrap();
    // A neighbour and a prefix of an existing key are no objects. (Not asked: a "directory"
    // such as `rejects`, which s3s-fs answers with HTTP 500 where AWS says 404.)
    assert!(store.get("rejects/chunk-000001.csv").unwrap().is_none());
    assert!(store.head("rejects/chunk-000001.csv").unwrap().is_none());
    assert!(store.get("rejects/chunk-000002").unwrap().is_none());
    assert!(store.head("rejects/chunk-000002").unwrap().is_none());
}

fn put_overwrites(store: &dyn ObjectStore, _: Kind) {
    store.put("detections.csv", b"first version\n").unwrap();
    store.put("detections.csv", b"second\n").unwrap();
    let object = store.get("detections.csv").unwrap().unwrap();
    assert_eq!(&object.body[..], b"second\n");
    assert_eq!(object.meta.size, 7);
    assert_eq!(store.head("detections.csv").unwrap().unwrap().size, 7);
    assert_eq!(list(store, "", None, 10), ["detections.csv"]);
}

fn put_if_absent_creates_once(store: &dyn ObjectStore, _: Kind) {
    for key in ["part-000001.csv", "rejects/part-000001.csv"] {
        assert_eq!(
            store.put_if_absent(key, b"first").unwrap(),
            PutOutcome::Created,
            "{key}"
        );
        assert_eq!(
            store.put_if_absent(key, b"second, longer").unwrap(),
            PutOutcome::AlreadyExists,
            "{key}"
        );
        assert_eq!(
            &store.get(key).unwrap().unwrap().body[..],
            b"first",
            "{key}"
        );
        assert_eq!(store.head(key).unwrap().unwrap().size, 5, "{key}");
    }
    // Over an object written by put, too.
    store.put("existing.csv", b"put").unwrap();
    assert_eq!(
        store.put_if_absent("existing.csv", b"other").unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        &store.get("existing.csv").unwrap().unwrap().body[..],
        b"put"
    );
    assert_eq!(
        list(store, "", None, 10),
        ["existing.csv", "part-000001.csv", "rejects/part-000001.csv"]
    );
}

/// Keys at several depths; no key is also a "directory" of another.
const TREE: &[&str] = &[
    "a.csv",
    "b.csv",
    "chunk-000001.csv",
    "chunk-000002.csv",
    "chunk-x/inside.csv",
    "rejects/chunk-000001.csv",
    "rejects/chunk-000002.csv",
    "rejects/deep/er/x.csv",
    "rejectsx.csv",
];

fn put_all(store: &dyn ObjectStore, keys: &[&str]) {
    for key in keys {
        store.put(key, key.as_bytes()).unwrap();
    }
}

fn lists_every_key_under_the_prefix_at_any_depth(store: &dyn ObjectStore, _: Kind) {
    put_all(store, TREE);
    assert_eq!(list(store, "", None, 100), sorted(TREE));
    assert_eq!(
        list(store, "rejects/", None, 100),
        [
            "rejects/chunk-000001.csv",
            "rejects/chunk-000002.csv",
            "rejects/deep/er/x.csv"
        ]
    );
    // A prefix is bytes, not a directory: it may end mid-name, at any depth.
    assert_eq!(
        list(store, "rejects", None, 100),
        [
            "rejects/chunk-000001.csv",
            "rejects/chunk-000002.csv",
            "rejects/deep/er/x.csv",
            "rejectsx.csv"
        ]
    );
    assert_eq!(
        list(store, "rejects/chunk-", None, 100),
        ["rejects/chunk-000001.csv", "rejects/chunk-000002.csv"]
    );
    assert_eq!(
        list(store, "rejects/d", None, 100),
        ["rejects/deep/er/x.csv"]
    );
    assert_eq!(
        list(store, "rejects/deep/er/", None, 100),
        ["rejects/deep/er/x.csv"]
    );
    // The landing's listing: a directory named like a chunk shows as nested keys.
    assert_eq!(
        list(store, "chunk-", None, 100),
        ["chunk-000001.csv", "chunk-000002.csv", "chunk-x/inside.csv"]
    );
    // An exact key is its own prefix.
    assert_eq!(list(store, "a.csv", None, 100), ["a.csv"]);
    // Prefixes that match nothing.
    for prefix in [
        "nothing",
        "z",
        "rejects/zzz",
        "rejects/deep/er/y",
        "missing/dir/",
        "a.csv/",
        "chunk-000003",
    ] {
        assert!(list(store, prefix, None, 100).is_empty(), "{prefix:?}");
    }
}

fn lists_in_byte_order_not_numeric_order(store: &dyn ObjectStore, _: Kind) {
    // '-' < '.' < '/' < '0' < 'A' < '_' < 'a': "a-b" sorts before "a.c/d" before "a/b".
    let keys = [
        "chunk-999999.csv",
        "chunk-1000000.csv",
        "chunk-000010.csv",
        "chunk-000009.csv",
        "a/b",
        "a-b",
        "a.c/d",
        "a0",
        "A",
        "_COMPLETE",
        "sub/Z.csv",
        "sub/a.csv",
        "sub-a.csv",
    ];
    put_all(store, &keys);
    let all = list(store, "", None, 100);
    assert_eq!(all, sorted(&keys));
    assert_eq!(
        list(store, "chunk-", None, 100),
        [
            "chunk-000009.csv",
            "chunk-000010.csv",
            "chunk-1000000.csv",
            "chunk-999999.csv"
        ]
    );
    assert_eq!(list(store, "a", None, 100), ["a-b", "a.c/d", "a/b", "a0"]);
    assert_eq!(
        list(store, "sub", None, 100),
        ["sub-a.csv", "sub/Z.csv", "sub/a.csv"]
    );
    assert_eq!(&all[..2], ["A", "_COMPLETE"]);
}

fn start_after_is_exclusive(store: &dyn ObjectStore, _: Kind) {
    put_all(store, TREE);
    let all = sorted(TREE);
    // From every key, and from names between, before and after the keys.
    let mut afters: Vec<String> = all.clone();
    afters.extend(
        [
            "",
            "0",
            "a",
            "a.csv0",
            "chunk-000001",
            "chunk-x",
            "chunk-x/",
            "rejects",
            "rejects/",
            "rejects/deep",
            "rejects/deep/er/x.csv0",
            "rejectsx.csv",
            "zzz",
        ]
        .map(String::from),
    );
    for after in &afters {
        let want: Vec<String> = all
            .iter()
            .filter(|k| k.as_bytes() > after.as_bytes())
            .cloned()
            .collect();
        assert_eq!(list(store, "", Some(after), 100), want, "after {after:?}");
        let want_rejects: Vec<String> = want
            .iter()
            .filter(|k| k.starts_with("rejects/"))
            .cloned()
            .collect();
        assert_eq!(
            list(store, "rejects/", Some(after), 100),
            want_rejects,
            "rejects/ after {after:?}"
        );
    }
    assert_eq!(
        list(store, "chunk-", Some("chunk-000001.csv"), 100),
        ["chunk-000002.csv", "chunk-x/inside.csv"]
    );
    assert!(list(store, "chunk-", Some("chunk-x/inside.csv"), 100).is_empty());
}

fn limit_and_pagination(store: &dyn ObjectStore, _: Kind) {
    let mut many: Vec<String> = (0..25).map(|i| format!("k-{i:03}")).collect();
    many.extend((0..7).map(|i| format!("k-sub/{i}.csv")));
    many.push("other.csv".into());
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    put_all(store, &refs);
    let all = list(store, "k-", None, 1000);
    let want: Vec<String> = sorted(&refs)
        .into_iter()
        .filter(|k| k.starts_with("k-"))
        .collect();
    assert_eq!(all, want);
    assert_eq!(all.len(), 32);

    assert!(store.list("", None, 0).unwrap().is_empty());
    assert!(store.list("k-", Some("k-010"), 0).unwrap().is_empty());
    assert_eq!(list(store, "k-", None, 1), want[..1]);
    assert_eq!(list(store, "k-", None, 10), want[..10]);
    assert_eq!(list(store, "k-", Some("k-004"), 3), want[5..8]);
    assert_eq!(list(store, "k-", None, 32), want);
    assert_eq!(list(store, "k-", None, 33), want);
    // Paging with start_after = the last key of the previous page, for several page sizes.
    for page_size in [1, 2, 5, 31] {
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = list(store, "k-", after.as_deref(), page_size);
            assert!(page.len() <= page_size);
            let Some(last) = page.last().cloned() else {
                break;
            };
            paged.extend(page);
            after = Some(last);
        }
        assert_eq!(paged, want, "page size {page_size}");
    }
}

fn temporaries_are_never_listed(store: &dyn ObjectStore, kind: Kind) {
    put_all(store, &["chunk-000001.csv", "rejects/chunk-000001.csv"]);
    match (kind, as_local(store).map(LocalStore::dir)) {
        (Kind::Local, Some(dir)) => {
            // What a writer killed mid-write leaves: a temporary file beside an object, in
            // the root and in a subdirectory.
            let pid = std::process::id();
            let temporaries = [
                format!(".tmp-chunk-000002.csv-{pid}-ThreadId(1)"),
                format!("rejects/.tmp-chunk-000002.csv-{pid}-ThreadId(3)"),
                format!("deep/er/.tmp-x.csv-{pid}-ThreadId(4)"),
            ];
            for tmp in &temporaries {
                let path = dir.join(tmp);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, b"half an obj").unwrap();
            }
            assert_eq!(
                list(store, "", None, 100),
                ["chunk-000001.csv", "rejects/chunk-000001.csv"]
            );
            for prefix in [".tmp-", "rejects/.tmp-", "deep/", "deep/er/.tmp-"] {
                assert!(list(store, prefix, None, 100).is_empty(), "{prefix}");
            }
            assert_eq!(
                list(store, "rejects/", None, 100),
                ["rejects/chunk-000001.csv"]
            );
        }
        (Kind::S3, None) => {
            // S3 writes leave no temporaries: what was put is all that is listed.
            assert_eq!(
                list(store, "", None, 100),
                ["chunk-000001.csv", "rejects/chunk-000001.csv"]
            );
        }
        (kind, dir) => panic!("{kind:?} store with local directory {dir:?}"),
    }
    // A conditional create and overwrites leave none behind either.
    store.put("chunk-000001.csv", b"again").unwrap();
    assert_eq!(
        store
            .put_if_absent("rejects/chunk-000001.csv", b"x")
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        store
            .put_if_absent("rejects/chunk-000002.csv", b"x")
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        list(store, "", None, 100),
        [
            "chunk-000001.csv",
            "rejects/chunk-000001.csv",
            "rejects/chunk-000002.csv"
        ]
    );
    // This process's own temporaries are not stale: none is removed.
    if let Some(local) = as_local(store) {
        assert_eq!(local.remove_stale_temporaries().unwrap(), 0);
    }
}

fn documented_differences(store: &dyn ObjectStore, kind: Kind) {
    match kind {
        Kind::Local => {
            // A directory: files written in place by other producers may be seen half-written.
            assert!(!store.atomic_puts());
            let local = as_local(store).expect("a local store is one");
            let dir = local.dir();
            assert_eq!(store.describe(), dir.display().to_string());
            store.check().unwrap();
            local.check_writable().unwrap();
            assert!(dir.is_dir(), "check_writable creates the root");
        }
        Kind::S3 => {
            assert!(store.atomic_puts());
            assert!(as_local(store).is_none());
            assert_eq!(store.describe(), "s3://conformance/run/landing");
            store.check().unwrap();
        }
    }
    // Either way nothing is listed that was not put.
    assert!(store.list("", None, 10).unwrap().is_empty());
}
