//! The fuzz targets' invariant checks (`fuzz/checks/`), run on stable over every committed
//! input: the seed corpora in `fuzz/corpus/<target>/` and the inputs that once failed, in
//! `fuzz/regressions/<target>/`. libFuzzer (`fuzz/run.sh`, nightly) searches for new
//! inputs; this test keeps every input it ever mattered on passing, in every CI run.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

#[path = "../fuzz/checks/classify.rs"]
mod classify;
#[path = "../fuzz/checks/redirect.rs"]
mod redirect;
#[path = "../fuzz/checks/scan_reply.rs"]
mod scan_reply;
#[path = "../fuzz/checks/scan_request.rs"]
mod scan_request;
#[path = "../fuzz/checks/split_merge.rs"]
mod split_merge;
#[path = "../fuzz/checks/topology.rs"]
mod topology;

/// Runs `check` on every file of the target's corpus and regressions; fails naming each
/// input that broke an invariant. Returns how many inputs ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            if path.is_file() {
                inputs.push(path);
            }
        }
    }
    inputs.sort();
    let mut failed = Vec::new();
    for path in &inputs {
        let data = fs::read(path).expect("read corpus input");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs failing: {failed:#?}");
    println!("{target}: {} inputs replayed", inputs.len());
    inputs.len()
}

#[test]
fn scan_request_corpus() {
    assert!(
        replay("scan_request", scan_request::run) > 0,
        "seeds are committed"
    );
}

#[test]
fn scan_reply_corpus() {
    assert!(
        replay("scan_reply", scan_reply::run) > 0,
        "seeds are committed"
    );
}

#[test]
fn classify_corpus() {
    assert!(replay("classify", classify::run) > 0, "seeds are committed");
}

#[test]
fn topology_corpus() {
    assert!(replay("topology", topology::run) > 0, "seeds are committed");
}

#[test]
fn redirect_corpus() {
    assert!(replay("redirect", redirect::run) > 0, "seeds are committed");
}

#[test]
fn split_merge_corpus() {
    assert!(
        replay("split_merge", split_merge::run) > 0,
        "seeds are committed"
    );
}
