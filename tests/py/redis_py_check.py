"""redis-py against slotgate, with its defaults (RESP3 via HELLO 3) and with protocol=2.

Usage: python redis_py_check.py PORT. Prints one line per check; exits non-zero on the
first failure with what was expected and what came back.
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
    check(f"{label} ping", r.ping(), True)
    for i in range(30):
        key = f"py:{label}:{i}"
        check(f"{label} set {key}", r.set(key, f"v{i}"), True)
        check(f"{label} get {key}", r.get(key), f"v{i}".encode())
        check(f"{label} incr", r.incr(f"{key}:n", 3), 3)
        r.hset(f"{key}:h", mapping={"a": "1", "b": "2"})
        check(f"{label} hgetall is a dict", r.hgetall(f"{key}:h"), {b"a": b"1", b"b": b"2"})
        check(f"{label} lpush", r.lpush(f"{key}:l", "x", "y"), 2)
        check(f"{label} lrange", r.lrange(f"{key}:l", 0, -1), [b"y", b"x"])
        check(f"{label} zadd", r.zadd(f"{key}:z", {"m": 2.5}), 1)
        check(f"{label} zscore", r.zscore(f"{key}:z", "m"), 2.5)
        check(f"{label} sadd", r.sadd(f"{key}:s", "a", "b"), 2)
        check(f"{label} smembers", r.smembers(f"{key}:s"), {b"a", b"b"})
        check(f"{label} expire", r.expire(key, 100), True)
        ttl = r.ttl(key)
        check(f"{label} ttl in range", 0 < ttl <= 100, True)
        entry = r.xadd(f"{key}:x", {"f": "v"})
        check(f"{label} xadd id", b"-" in entry, True)
        check(f"{label} xlen", r.xlen(f"{key}:x"), 1)
    check(f"{label} missing key", r.get("py:no-such-key"), None)
    check(f"{label} binary", r.set("py:bin", bytes(range(256))) and r.get("py:bin"), bytes(range(256)))
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"py:{label}:pipe:{i}", i)
    for i in range(1000):
        pipe.get(f"py:{label}:pipe:{i}")
    results = pipe.execute()
    check(f"{label} pipeline", results[1000:], [str(i).encode() for i in range(1000)])
    # The default pipeline() is a transaction (MULTI ... EXEC in one write).
    tag = "{py-%s}" % label
    tx = r.pipeline()
    tx.set(f"{tag}tx", "applied")
    tx.incr(f"{tag}tx:n")
    tx.get(f"{tag}tx")
    tx.hset(f"{tag}tx:h", mapping={"a": "1"})
    tx.hgetall(f"{tag}tx:h")
    tx.ping()
    check(f"{label} transaction results", tx.execute(), [True, 1, b"applied", 1, {b"a": b"1"}, True])
    check(f"{label} transaction applied", r.get(f"{tag}tx:n"), b"1")
    # WATCH: the optimistic check-and-set; another client's write makes EXEC fail.
    with r.pipeline() as tx:
        tx.watch(f"{tag}tx:n")
        n = int(tx.get(f"{tag}tx:n"))
        tx.multi()
        tx.set(f"{tag}tx:n", n + 10)
        check(f"{label} watched transaction", tx.execute(), [True])
    check(f"{label} watched transaction applied", r.get(f"{tag}tx:n"), b"11")
    with r.pipeline() as tx:
        tx.watch(f"{tag}tx:n")
        r.incr(f"{tag}tx:n")
        tx.multi()
        tx.set(f"{tag}tx:n", 0)
        try:
            tx.execute()
            check(f"{label} watch conflict raises", "executed", "WatchError")
        except redis.exceptions.WatchError:
            check(f"{label} watch conflict raises", "WatchError", "WatchError")
    check(f"{label} watch conflict applied nothing", r.get(f"{tag}tx:n"), b"12")
    # The transaction() helper retries until its WATCH holds.
    def double(pipe):
        n = int(pipe.get(f"{tag}tx:n"))
        pipe.multi()
        pipe.set(f"{tag}tx:n", n * 2)
    check(f"{label} transaction helper", r.transaction(double, f"{tag}tx:n"), [True])
    check(f"{label} transaction helper applied", r.get(f"{tag}tx:n"), b"24")
    # Keys in two slots: one EXEC, the replies in order.
    tx = r.pipeline()
    tx.set(f"{tag}tx:x", "applied")
    tx.set(f"py:{label}:elsewhere", "applied")
    tx.get(f"py:{label}:elsewhere")
    check(f"{label} cross-slot transaction", tx.execute(), [True, True, b"applied"])
    # One command over two slots aborts it: the error, and nothing applied.
    tx = r.pipeline()
    tx.set(f"{tag}tx:y", "applied")
    tx.mset({f"{tag}tx:z": "applied", f"py:{label}:elsewhere2": "applied"})
    try:
        tx.execute()
        check(f"{label} cross-slot command raises", "executed", "raised")
    except redis.exceptions.ResponseError as e:
        check(f"{label} cross-slot command raises", "CROSSSLOT" in str(e) or "slot" in str(e), True)
    check(f"{label} cross-slot command applied nothing", r.get(f"{tag}tx:y"), None)
    check(f"{label} cross-slot command applied nothing", r.get(f"py:{label}:elsewhere2"), None)
    check(f"{label} usable after", r.set(f"{tag}tx:after", 1), True)
    r.close()


def main():
    port = int(sys.argv[1])
    print("redis-py", redis.__version__)
    exercise(port)
    exercise(port, protocol=3)
    exercise(port, protocol=2)
    print("all checks passed")


if __name__ == "__main__":
    main()
