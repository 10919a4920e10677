#!/usr/bin/env python3
"""Opens COUNT idle client connections to 127.0.0.1:PORT for benches/memory.sh.

    idle_clients.py PORT COUNT [HOLD_SECONDS]

Each connection sends one PING and waits for +PONG, so the server's session is fully
set up, then stays open and idle. Prints `ready OPEN FAILED` once all are open, then
holds them until SIGTERM or HOLD_SECONDS (default 300), and closes them on exit.
Bounded: 5 s per connect or reply, 180 s for opening them all. Loopback only.
"""

import signal
import socket
import sys
import time

PING = b"*1\r\n$4\r\nPING\r\n"


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    socks, failed, first_error = [], 0, None
    deadline = time.monotonic() + 180
    for _ in range(count):
        if time.monotonic() > deadline:
            failed += count - len(socks) - failed
            first_error = first_error or "180 s opening deadline reached"
            break
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(PING)
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    raise ConnectionError("closed by server")
                got += chunk
            if got != b"+PONG\r\n":
                raise ConnectionError(f"unexpected reply {got!r}")
            socks.append(s)
        except OSError as e:
            failed += 1
            first_error = first_error or repr(e)
            if s is not None:
                s.close()
    if first_error:
        print(f"first failure: {first_error}", file=sys.stderr, flush=True)
    print(f"ready {len(socks)} {failed}", flush=True)
    try:
        time.sleep(hold)
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
