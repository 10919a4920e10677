//! README.md's command support table is generated from the code
//! (`slotgate::dispatch::support`), so it cannot drift: this test fails when README
//! differs, and `SLOTGATE_BLESS=1 cargo test --test command_table` rewrites it in place.
//! A second test checks that every command the installed redis-server reports has a row.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use slotgate::dispatch::support::{rows, support_table};
use support::Cluster;

const BEGIN: &str = "<!-- command-table:begin -->";
const END: &str = "<!-- command-table:end -->";
const BLESS: &str = "SLOTGATE_BLESS";

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

#[test]
fn readme_carries_the_generated_command_table() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (Some(begin), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the markers {BEGIN} and {END} around the command table");
    };
    assert!(begin < end, "README.md: {BEGIN} must come before {END}");
    let begin = begin + BEGIN.len();
    let wanted = format!("\n{}", support_table());
    let current = &readme[begin..end];
    if current == wanted {
        return;
    }
    if std::env::var_os(BLESS).is_some_and(|v| v != "0") {
        let updated = format!("{}{wanted}{}", &readme[..begin], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        eprintln!("README.md: command table rewritten");
        return;
    }
    let (line, ours, theirs) = first_difference(current, &wanted);
    panic!(
        "README.md's command table is not what the code serves (first difference at line \
         {line} of the table):\n  README: {ours}\n  code:   {theirs}\n\
         Update it with `{BLESS}=1 cargo test --test command_table` and review the diff."
    );
}

/// The first line where `a` and `b` differ: its number (1-based) and both texts.
fn first_difference<'a>(a: &'a str, b: &'a str) -> (usize, &'a str, &'a str) {
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    for n in 1.. {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => return (n, "<same lines; line endings differ>", ""),
            (x, y) => return (n, x.unwrap_or("<end>"), y.unwrap_or("<end>")),
        }
    }
    unreachable!()
}

/// Every command and subcommand redis-server's own `COMMAND` reply lists (Redis 7: each
/// entry's 10th element holds its subcommands) has a row, as `CLIENT KILL`.
#[test]
fn every_command_of_the_installed_redis_has_a_row() {
    let cluster = Cluster::start(1, 0);
    let mut con = cluster.node_client(cluster.master_ports()[0]);
    let reply: redis::Value = redis::cmd("COMMAND").query(&mut con).expect("COMMAND");
    let mut reported = BTreeSet::new();
    collect_names(&reply, &mut reported);
    assert!(
        reported.len() > 200 && reported.contains("CLIENT KILL"),
        "COMMAND listed {} names: {reported:?}",
        reported.len()
    );
    let listed: BTreeSet<String> = rows().into_iter().map(|r| r.command).collect();
    let missing: Vec<&String> = reported
        .iter()
        .filter(|name| !listed.contains(*name))
        .filter(|name| {
            // A container with subcommands is listed as its subcommands.
            let prefix = format!("{name} ");
            !listed.iter().any(|l| l.starts_with(&prefix))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "redis-server reports commands the table has no row for: {missing:?}"
    );
}

/// Names from a `COMMAND` reply, upper case, subcommands as `CONTAINER SUB`.
fn collect_names(reply: &redis::Value, out: &mut BTreeSet<String>) {
    let redis::Value::Array(entries) = reply else {
        panic!("COMMAND: not an array: {reply:?}");
    };
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        if let Some(redis::Value::BulkString(name)) = fields.first() {
            let name = String::from_utf8_lossy(name).replace('|', " ");
            out.insert(name.to_uppercase());
        }
        if let Some(subcommands @ redis::Value::Array(_)) = fields.get(9) {
            collect_names(subcommands, out);
        }
    }
}
