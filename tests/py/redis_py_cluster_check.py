"""redis-py's RedisCluster pointed at slotgate, with its default protocol and protocol=2.

slotgate answers CLUSTER SLOTS as a one-node cluster at the address the client
connected to, so RedisCluster must find exactly one node, slotgate itself, and send
everything there. Usage: python redis_py_cluster_check.py PORT. Prints one line per
check; exits non-zero on the first failure with what was expected and what came back.
"""
import sys

import redis
from redis.cluster import RedisCluster


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok {name}")


def only_slotgate(label, rc, port):
    nodes = sorted((n.host, n.port, n.server_type) for n in rc.get_nodes())
    check(f"{label} nodes are slotgate alone", nodes, [("127.0.0.1", port, "primary")])


def exercise(port, **kwargs):
    label = "resp%s" % kwargs.get("protocol", "-default")
    rc = RedisCluster(host="127.0.0.1", port=port, **kwargs)
    only_slotgate(label, rc, port)
    check(f"{label} ping", rc.ping(), True)

    keys = [f"pyc:{label}:{i}" for i in range(100)]
    slots = {rc.keyslot(k) for k in keys}
    check(f"{label} keys spread over many slots", len(slots) > 90, True)
    for i, key in enumerate(keys):
        check(f"{label} set {key}", rc.set(key, f"v{i}"), True)
    for i, key in enumerate(keys):
        check(f"{label} get {key}", rc.get(key), f"v{i}".encode())

    check(
        f"{label} mget_nonatomic",
        rc.mget_nonatomic(keys + [f"pyc:{label}:missing"]),
        [f"v{i}".encode() for i in range(100)] + [None],
    )
    check(
        f"{label} mset_nonatomic",
        rc.mset_nonatomic({f"pyc:{label}:m:{i}": i for i in range(50)}),
        [True] * len({rc.keyslot(f"pyc:{label}:m:{i}") for i in range(50)}),
    )

    pipe = rc.pipeline()
    for i, key in enumerate(keys):
        pipe.incr(f"{key}:n", i)
    for key in keys:
        pipe.get(key)
    results = pipe.execute()
    check(f"{label} pipeline incr", results[:100], list(range(100)))
    check(f"{label} pipeline get", results[100:], [f"v{i}".encode() for i in range(100)])

    # What the cluster commands it may use say about slotgate.
    check(f"{label} keyslot asked", rc.cluster_keyslot("foo"), 12182)
    info = rc.cluster_info()
    check(f"{label} cluster_state", info["cluster_state"], "ok")
    check(f"{label} cluster_slots_assigned", int(info["cluster_slots_assigned"]), 16384)
    check(f"{label} cluster_known_nodes", int(info["cluster_known_nodes"]), 1)
    slot = rc.keyslot(keys[0])
    check(f"{label} countkeysinslot", rc.cluster_countkeysinslot(slot) >= 1, True)
    # redis-py decodes this reply itself.
    listed = [k.decode() if isinstance(k, bytes) else k for k in rc.cluster_get_keys_in_slot(slot, 1000)]
    check(f"{label} getkeysinslot", keys[0] in listed, True)

    # Still slotgate alone: nothing redirected the client anywhere else.
    only_slotgate(label, rc, port)
    rc.close()


def main():
    port = int(sys.argv[1])
    print(f"redis-py {redis.__version__}")
    exercise(port)
    exercise(port, protocol=2)
    print("all checks passed")


if __name__ == "__main__":
    main()
