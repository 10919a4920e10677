#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, recorded from real traffic on loopback.

A small relay sits between a client and a real redis-server and keeps the bytes each
way. Recorded: a redis-benchmark run (plain and pipelined), a redis-py session, and
from a 6-node test cluster its CLUSTER SHARDS / SLOTS / NODES replies (RESP2 and RESP3)
and real MOVED / ASK errors. The streams are cut into one request or reply (or a few)
per file under fuzz/corpus/<target>/.

    python3 fuzz/record_corpus.py            # redis-py from PATH, or:
    /path/to/venv/bin/python fuzz/record_corpus.py

Needs redis-server, redis-cli and redis-benchmark; redis-py for the session (skipped
without it). Starts every server it uses on free ports and stops them at the end.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def free_port():
    """A free port below 55536, so that a cluster node's bus port (+10000) exists too."""
    import random
    while True:
        port = random.randrange(20000, 55000)
        with socket.socket() as s, socket.socket() as bus:
            try:
                s.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


def wait_port(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Relay:
    """Accepts on a free port, forwards to `upstream`, keeps both directions' bytes."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.sessions = []  # [requests bytearray, replies bytearray]
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            record = [bytearray(), bytearray()]
            with self.lock:
                self.sessions.append(record)
            threading.Thread(target=self.pump, args=(client, server, record[0]), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, record[1]), daemon=True).start()

    def pump(self, src, dst, into):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    into.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def read_line(buf, at):
    end = buf.index(b"\r\n", at)
    return buf[at:end], end + 2


def frame_end(buf, at):
    """End of the RESP2/RESP3 frame at `at` (enough for what real servers send)."""
    ty = buf[at:at + 1]
    line, nxt = read_line(buf, at + 1)
    if ty in (b"+", b"-", b":", b",", b"(", b"#", b"_"):
        return nxt
    if ty in (b"$", b"!", b"="):
        n = int(line)
        return nxt if n < 0 else nxt + n + 2
    if ty in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if ty in (b"%", b"|"):
            n *= 2
        for _ in range(max(n, 0)):
            nxt = frame_end(buf, nxt)
        if ty == b"|":
            nxt = frame_end(buf, nxt)
        return nxt
    raise ValueError(f"type {ty!r}")


def frames(buf):
    out, at = [], 0
    while at < len(buf):
        if buf[at:at + 1] != b"*" and b"\r\n" in buf[at:at + 200] and buf[at:at + 1] not in b"+-:$,(#_!=~>%|":
            line, nxt = read_line(buf, at)  # an inline request
            out.append(bytes(buf[at:nxt]))
            at = nxt
            continue
        try:
            end = frame_end(buf, at)
        except (ValueError, IndexError):
            break
        if end > len(buf):
            break
        out.append(bytes(buf[at:end]))
        at = end
    return out


def save(target, data, limit=24 * 1024):
    if len(data) > limit:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def save_stream(target, items, per_file, control):
    """Files of `per_file` frames, each behind the targets' control bytes."""
    for i in range(0, len(items), per_file):
        chunk = b"".join(items[i:i + per_file])
        save(target, control(i) + chunk)


def scan_control(i):
    # Byte 0: default limits (even) or small ones; bytes 1-2: where the stream is cut.
    return bytes([(i * 2) % 256 if i % 3 else (i * 37) % 256 | 1, (i * 13) % 256, i % 3])


class Server:
    def __init__(self, tmp, *args):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=tmp)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def raw_call(port, *commands):
    """Sends each command (RESP array) on one connection, returns the raw replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        replies = []
        for args in commands:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            buf = b""
            while True:
                buf += s.recv(65536)
                try:
                    end = frame_end(buf, 0)
                    if end <= len(buf):
                        break
                except (ValueError, IndexError):
                    continue
            replies.append(buf)
        return replies


def standalone_traffic(tmp):
    server = Server(tmp)
    relay = Relay(server.port)
    bench = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(relay.port), "-c", "2", "-n", "60", "-q",
             "-r", "1000", "-t", "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset"]
    subprocess.run(bench, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(bench[:-2] + ["-t", "set,get,mset", "-P", "8"], check=True, stdout=subprocess.DEVNULL)
    try:
        import redis  # noqa: F401
        redis_py_session(relay.port)
    except ImportError:
        print("record: redis-py not importable; no redis-py session", file=sys.stderr)
    time.sleep(0.3)
    relay.close()
    server.stop()
    return relay.sessions


def redis_py_session(port):
    import redis
    for protocol in (2, 3):
        r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
        r.set("user:{1000}:name", "ada")
        r.get("user:{1000}:name")
        r.mset({"a": "1", "b": "2", "{t}c": "3"})
        r.mget("a", "b", "{t}c", "missing")
        r.delete("a", "missing")
        r.exists("b", "{t}c")
        r.hset("h", mapping={"f1": "v1", "f2": "v2"})
        r.hgetall("h")
        r.lpush("l", *range(5))
        r.lrange("l", 0, -1)
        r.zadd("z", {"m1": 1.5, "m2": 2})
        r.zrange("z", 0, -1, withscores=True)
        r.sadd("s", "x", "y")
        r.smembers("s")
        r.xadd("st", {"f": "v"})
        r.xrange("st")
        r.expire("b", 100)
        r.ttl("b")
        r.eval("return {KEYS[1], ARGV[1]}", 1, "k", "v")
        r.incrbyfloat("f", 1.25)
        list(r.scan_iter(count=5))
        pipe = r.pipeline(transaction=True)
        pipe.set("p", "1").incr("p").get("p")
        pipe.execute()
        r.info("server")
        r.unlink("h", "l", "z", "s", "st")
        r.close()


def cluster_traffic(tmp):
    nodes = []
    try:
        for _ in range(6):
            nodes.append(Server(tmp, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                "--cluster-config-file", "nodes.conf"))
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = nodes[0].port
        for _ in range(100):
            if b"cluster_state:ok" in raw_call(port, ["CLUSTER", "INFO"])[0]:
                break
            time.sleep(0.1)
        # Replicas report "loading" until their master has written once.
        for n in nodes:
            raw_call(n.port, ["SET", "warm", "1"])
        time.sleep(1)
        for n in nodes[:2] + nodes[3:4]:
            for resp3 in (False, True):
                calls = ([["HELLO", "3"]] if resp3 else []) + [["CLUSTER", "SHARDS"], ["CLUSTER", "SLOTS"],
                                                                ["CLUSTER", "NODES"]]
                replies = raw_call(n.port, *calls)[1 if resp3 else 0:]
                for r in replies:
                    save("topology", r)
        # MOVED: a key asked of every node (the owner answers, the others redirect).
        errors = []
        for key in ("foo", "bar", "{user1000}.following", "x" * 40):
            for n in nodes[:3]:
                errors += raw_call(n.port, ["GET", key])
        # ASK: a slot set migrating, a missing key of it asked of the source.
        ids = {n.port: raw_call(n.port, ["CLUSTER", "MYID"])[0].split(b"\r\n")[1].decode() for n in nodes[:3]}
        slot = int(raw_call(port, ["CLUSTER", "KEYSLOT", "nokey"])[0][1:-2])
        owner = next(n for n in nodes[:3] if raw_call(n.port, ["GET", "nokey"])[0][:6] != b"-MOVED")
        other = next(n for n in nodes[:3] if n is not owner)
        raw_call(other.port, ["CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner.port]])
        raw_call(owner.port, ["CLUSTER", "SETSLOT", slot, "MIGRATING", ids[other.port]])
        errors += raw_call(owner.port, ["GET", "nokey"], ["MGET", "nokey", "{nokey}2"])
        save("topology", raw_call(owner.port, ["CLUSTER", "NODES"])[0])
        save("topology", raw_call(other.port, ["CLUSTER", "NODES"])[0])
        errors += raw_call(owner.port, ["MGET", "foo", "bar"])  # CROSSSLOT
        for i, e in enumerate(errors):
            if e.startswith(b"-"):
                save("redirect", bytes([i % 3]) + e)
                save("scan_reply", bytes([0, i, 0]) + e)
    finally:
        for n in nodes:
            n.stop()


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = standalone_traffic(tmp)
        requests, replies = [], []
        for req, rep in sessions:
            requests += frames(req)
            replies += frames(rep)
        print(f"record: {len(sessions)} connections, {len(requests)} requests, {len(replies)} replies")
        # One file per distinct request shape for the classifier; a few per file otherwise.
        seen = set()
        for r in requests:
            words = r.split(b"\r\n")
            key = (words[2].upper() if len(words) > 2 else r[:8], len(words))
            if key not in seen:
                seen.add(key)
                save("classify", r)
        uniq_req = list(dict.fromkeys(requests))
        uniq_rep = list(dict.fromkeys(replies))
        save_stream("scan_request", uniq_req[:400], 3, scan_control)
        save_stream("scan_reply", uniq_rep[:400], 3, scan_control)
        # Split/merge: the keys of the recorded multi-key requests.
        for r in uniq_req[::8]:
            words = r.split(b"\r\n")[2::2]
            if words and words[0].upper() in (b"MGET", b"MSET", b"DEL", b"EXISTS", b"UNLINK", b"TOUCH"):
                which = [b"MGET", b"MSET", b"DEL", b"EXISTS", b"UNLINK", b"TOUCH"].index(words[0].upper())
                save("split_merge", bytes([which, 0]) + b"\n".join(words[1:]))
                save("split_merge", bytes([which | 0x40, 0x80 | (which % 3)]) + b"\n".join(words[1:]))
        # Merge policies over real replies: byte 1 picks the policy.
        for i, rep in enumerate(uniq_rep[:60]):
            save("split_merge", bytes([0x80, i % 19]) + rep + rep)
        cluster_traffic(tmp)
    fixtures = os.path.join(HERE, "..", "src", "cluster", "fixtures")
    for name in sorted(os.listdir(fixtures)):
        if name.endswith(".resp"):
            with open(os.path.join(fixtures, name), "rb") as f:
                save("topology", f.read())
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"record: corpus/{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
