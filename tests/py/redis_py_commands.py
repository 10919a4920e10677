"""What redis-py users reach for first, through slotgate: multi-key commands over keys in
many slots, scan_iter, Lock, register_script after a SCRIPT FLUSH, FLUSHALL, DBSIZE,
INFO. With redis-py's defaults (RESP3 via HELLO 3) and with protocol=2.

Usage: python redis_py_commands.py PORT. Prints one line per check; exits non-zero on
the first failure with what was expected and what came back.
"""
import sys

import redis


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok {name}")


def exercise(port, **kwargs):
    label = "resp%s" % kwargs.get("protocol", "-default")
    r = redis.Redis(host="127.0.0.1", port=port, **kwargs)
    check(f"{label} flushall", r.flushall(), True)
    check(f"{label} dbsize empty", r.dbsize(), 0)

    keys = [f"pyc:{label}:{i}" for i in range(1000)]
    check(f"{label} mset 1000 keys", r.mset({k: f"v:{k}" for k in keys}), True)
    check(f"{label} mget 1000 keys", r.mget(keys), [f"v:{k}".encode() for k in keys])
    check(f"{label} exists", r.exists(*keys), 1000)
    check(f"{label} dbsize", r.dbsize(), 1000)
    check(f"{label} delete 500", r.delete(*keys[:500]), 500)
    check(f"{label} mget after delete", r.mget(keys[499:501]), [None, f"v:{keys[500]}".encode()])
    check(f"{label} unlink", r.unlink(*keys), 500)

    many = {f"pyscan:{label}:{i}" for i in range(10000)}
    pipe = r.pipeline(transaction=False)
    for k in many:
        pipe.set(k, 1)
    pipe.execute()
    found = [k.decode() for k in r.scan_iter(match=f"pyscan:{label}:*", count=1000)]
    check(f"{label} scan_iter finds every key", set(found), many)
    check(f"{label} scan_iter finds each once", len(found), len(many))

    lock = r.lock(f"pylock:{label}", timeout=10)
    check(f"{label} lock acquire", lock.acquire(blocking=False), True)
    other = r.lock(f"pylock:{label}", timeout=10)
    check(f"{label} lock held", other.acquire(blocking=False), False)
    check(f"{label} lock extend", lock.extend(5), True)
    check(f"{label} lock owned", lock.owned(), True)
    lock.release()
    check(f"{label} lock released", other.acquire(blocking=False), True)
    other.release()

    script = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    check(f"{label} script", script(keys=[f"pyscript:{label}"], args=[5]), 5)
    check(f"{label} script flush", r.script_flush(), True)
    check(f"{label} script after flush", script(keys=[f"pyscript:{label}"], args=[5]), 10)
    sha = r.script_load("return 1")
    check(f"{label} script exists", r.script_exists(sha, "0" * 40), [True, False])

    info = r.info()
    check(f"{label} info is standalone", info.get("cluster_enabled"), 0)
    check(f"{label} info keyspace", info.get("db0", {}).get("keys", 0) >= 10000, True)
    check(f"{label} info memory", info.get("used_memory", 0) > 0, True)
    check(f"{label} flushall async", r.flushall(asynchronous=True), True)
    r.close()


def main():
    port = int(sys.argv[1])
    print("redis-py", redis.__version__)
    exercise(port)
    exercise(port, protocol=2)
    print("all checks passed")


if __name__ == "__main__":
    main()
