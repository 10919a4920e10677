//! The redirect parser: what an error reply from a node means for routing.
//! Invariants beyond "no panic":
//! - a `MOVED`/`ASK` names a slot below 16384 and an address with a non-zero port that
//!   re-parses as itself and holds no space or control byte;
//! - written back as `-MOVED <slot> <addr>` it parses to the same redirect;
//! - the whole-frame parser and the text parser agree on one-line errors.
//!
//! Input: byte 0 picks the node that answered, the rest is the reply (or error text).

use slotgate::cluster::NodeAddr;
use slotgate::protocol::redirect::{parse_error_text, parse_redirect, Redirect};
use slotgate::slot::SLOT_COUNT;

fn check(redirect: &Option<Redirect>, from: &NodeAddr) {
    let (word, slot, addr) = match redirect {
        Some(Redirect::Moved { slot, addr }) => ("MOVED", slot, addr),
        Some(Redirect::Ask { slot, addr }) => ("ASK", slot, addr),
        _ => return,
    };
    assert!(usize::from(slot.get()) < SLOT_COUNT);
    let text = addr.as_str();
    assert!(
        !text.bytes().any(|b| b == b' ' || b.is_ascii_control()),
        "{text:?}"
    );
    assert_eq!(
        NodeAddr::parse(text).as_ref(),
        Some(addr),
        "{text:?} re-parses"
    );
    assert!(!text.ends_with(":0"));
    let again = format!("-{word} {slot} {text}\r\n");
    assert_eq!(
        &parse_redirect(again.as_bytes(), from),
        redirect,
        "{again:?}"
    );
}

/// One fuzz input through the checks above; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let Some((&which, reply)) = data.split_first() else {
        return;
    };
    let from = match which % 3 {
        0 => NodeAddr::new("10.0.0.9", 7000),
        1 => NodeAddr::new("::1", 7001),
        _ => NodeAddr::new("node-3.example.test", 6379),
    };
    let parsed = parse_redirect(reply, &from);
    check(&parsed, &from);
    let text = parse_error_text(reply, &from);
    check(&text, &from);
    if !reply.contains(&b'\r') && !reply.contains(&b'\n') {
        let mut frame = Vec::with_capacity(reply.len() + 3);
        frame.push(b'-');
        frame.extend_from_slice(reply);
        frame.extend_from_slice(b"\r\n");
        assert_eq!(parse_redirect(&frame, &from), text, "frame and text agree");
    }
}
