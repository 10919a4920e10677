//! The current redis-py from PyPI, in a virtual environment this test makes, with its
//! default settings (RESP3: it opens with `HELLO 3`) and with `protocol=2`.

mod support;

use support::{python_or_skip, require_redis, run_py_check, Cluster, Proxy};

#[test]
fn redis_py_default_resp3_and_resp2() {
    require_redis();
    let Some(python) = python_or_skip("redis_py_default_resp3_and_resp2") else {
        return;
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let stdout = run_py_check(&python, "redis_py_check.py", proxy.port(), || proxy.log());
    println!("{}", stdout.lines().next().unwrap_or_default());
}

#[test]
fn redis_py_multi_key_scan_lock_and_scripts() {
    require_redis();
    let Some(python) = python_or_skip("redis_py_multi_key_scan_lock_and_scripts") else {
        return;
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let stdout = run_py_check(&python, "redis_py_commands.py", proxy.port(), || {
        proxy.log()
    });
    println!("{}", stdout.lines().next().unwrap_or_default());
}
