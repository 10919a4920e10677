//! The command table: classification, key extraction and the plan built on them.
//! Invariants beyond "no panic":
//! - a known command's arity holds; its key positions are arguments (1..argc), distinct,
//!   as many as `KeyIndices::len` says; a keyed route has keys;
//! - the command and subcommand names are case-insensitive: the request with their case
//!   flipped classifies the same;
//! - the plan agrees with the slots: one slot's master for one slot, a split or
//!   `CROSSSLOT` only when the keys span several slots, and a split only for the
//!   splittable commands;
//! - every error text is one line (it goes to the client as one `-ERR` frame).
//!
//! Input: a stream of requests (RESP arrays or inline commands), as a client sends.

use bytes::BytesMut;
use slotgate::backend::Target;
use slotgate::command::{self, classify, flags, Args, Route};
use slotgate::dispatch::plan::{plan, Plan, PlanError};
use slotgate::protocol::scan::{Limits, RequestScanner};
use slotgate::slot::Slot;

fn flip_case(arg: &[u8]) -> Vec<u8> {
    arg.iter()
        .map(|&b| {
            if b.is_ascii_lowercase() {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

fn one_line(text: &[u8]) {
    assert!(
        !text.contains(&b'\r') && !text.contains(&b'\n'),
        "error text is one line: {text:?}"
    );
}

fn check(args: &[Vec<u8>]) {
    let argc = args.argc();
    let classified = classify(args);
    let mut flipped = args.to_vec();
    flipped[0] = flip_case(&args[0]);
    if argc > 1 {
        flipped[1] = flip_case(&args[1]);
    }
    match (&classified, classify(&flipped)) {
        (Ok(a), Ok(b)) => assert_eq!(*a, b, "case-insensitive"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("case changed the outcome: {a:?} vs {b:?}"),
    }
    let mut slots = Vec::new();
    match &classified {
        Ok(c) => {
            assert!(c.spec.arity_ok(argc));
            assert_eq!(command::spec_of(args), Some(c.spec));
            let keys: Vec<usize> = c.keys.iter().collect();
            assert_eq!(keys.len(), c.keys.len());
            let mut seen = std::collections::HashSet::new();
            for &k in &keys {
                assert!(k >= 1 && k < argc, "key position {k} of {argc} arguments");
                assert!(seen.insert(k), "key position {k} twice");
                slots.push(Slot::of_key(args.arg(k)));
            }
            if c.route == Route::Slot {
                assert!(!keys.is_empty(), "a slot route has keys");
            }
        }
        Err(e) => one_line(&e.message_bytes()),
    }
    slots.dedup();
    let one_slot = slots.windows(2).all(|w| w[0] == w[1]);
    match plan(args, None, 7) {
        Ok(Plan::Node(Target::Slot(slot)) | Plan::Script(Target::Slot(slot))) => {
            assert!(!slots.is_empty() && one_slot, "one node for one slot");
            assert_eq!(slots[0], slot);
        }
        Ok(Plan::Pinned {
            target: Target::Slot(slot),
            ..
        }) => {
            assert!(one_slot);
            assert_eq!(slots[0], slot);
        }
        Ok(Plan::Split) => {
            assert!(!one_slot, "a split spans slots");
            let spec = classified.as_ref().expect("classified").spec;
            assert!(spec.has_flag(flags::SPLITTABLE));
        }
        Ok(Plan::AcrossSlots) | Err(PlanError::CrossSlot | PlanError::NotAtomic) => {
            assert!(!one_slot, "CROSSSLOT spans slots");
        }
        Ok(Plan::Refuse { name, reason }) => {
            one_line(Plan::refusal(name, reason, args).as_bytes());
        }
        Ok(_) => {}
        Err(e) => one_line(e.to_string().as_bytes()),
    }
}

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let mut scanner = RequestScanner::new(Limits::default());
    let mut buf = BytesMut::from(data);
    while let Ok(Some(request)) = scanner.next_request(&mut buf) {
        let args: Vec<Vec<u8>> = request.args().map(<[u8]>::to_vec).collect();
        check(&args);
    }
}
