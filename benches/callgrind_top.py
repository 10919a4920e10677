#!/usr/bin/env python3
"""Top functions of one callgrind dump, by self and by inclusive Ir, for benches/callgrind.sh.

    callgrind_top.py DUMP TOP PER   (PER: divide Ir by this, e.g. the number of GETs)

Reads the callgrind format directly: callgrind_annotate 3.19 reports the frames that
were still on the stack when a dump was taken mid-run (clone, start_thread, the tokio
worker loop) with their whole inclusive cost as self cost, which buries the real top.
Self Ir: cost lines under a function; inclusive Ir: self plus the costs of its calls
(recursive calls counted again, as callgrind_annotate does); self Ir is listed per
function and source file (code inlined from elsewhere keeps its file, as in
callgrind_annotate), inclusive Ir per function. Prints four lists: self, inclusive,
inclusive restricted to slotgate's own functions (`slotgate::`), and self Ir summed
by origin (slotgate's src/, each crate, std, malloc, libc).
"""

import re
import sys
from collections import defaultdict

NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    tables = defaultdict(dict)  # kind ("fn", "fl") -> compressed id -> name
    self_ir = defaultdict(int)  # (function, source file of the instructions) -> Ir
    incl_ir = defaultdict(int)  # function -> Ir
    summary = None
    fn = None
    fl = fi = "???"
    call_pending = False

    def resolve(kind, spec):
        m = NAME.match(spec)
        if not m:
            return spec
        if m.group(2) is not None:
            tables[kind][m.group(1)] = m.group(2)
        return tables[kind].get(m.group(1), spec)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if call_pending:
                    incl_ir[fn] += ir
                    call_pending = False
                else:
                    self_ir[(fn, fi)] += ir
                    incl_ir[fn] += ir
            elif line.startswith("fn="):
                fn = resolve("fn", line[3:])
                fi = fl
            elif line.startswith("fl="):
                fl = fi = resolve("fl", line[3:])
            elif line.startswith(("fi=", "fe=")):
                fi = resolve("fl", line[3:])
            elif line.startswith("cfn="):
                resolve("fn", line[4:])
            elif line.startswith(("cfi=", "cfl=")):
                resolve("fl", line[4:])
            elif line.startswith("calls="):
                call_pending = True
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:") and summary is None:
                summary = int(line.split()[1])
    return self_ir, incl_ir, summary


def short_file(path):
    """`tokio-1.54.1/.../stream.rs`, `std/.../time.rs`, `src/session/mod.rs`, `libc/malloc.c`."""
    m = re.search(r"/index\.crates\.io-[^/]*/([^/]+)/", path)
    if m:
        return f"{m.group(1)}/.../{path.rsplit('/', 1)[-1]}"
    if path.startswith("/rustc/"):
        return f"std/.../{path.rsplit('/', 1)[-1]}"
    m = re.search(r"(?:^|/)(src/.*)$", path)
    if m:
        return m.group(1)
    return path.rsplit("/", 1)[-1]


def origin(path):
    """Where self cost comes from: a crate name, `std`, `slotgate`, `malloc` or `libc/other`."""
    m = re.search(r"/index\.crates\.io-[^/]*/([^/]+)-\d+\.\d+[^/]*/", path)
    if m:
        return m.group(1)
    if path.startswith("/rustc/"):
        return "std (core, alloc, std)"
    if re.search(r"(?:^|/)src/", path):
        return "slotgate (src/)"
    if "malloc" in path:
        return "malloc/free"
    return "libc and other"


def show(title, items, top, per, total, what="function"):
    print(title)
    print(f"  {'Ir':>12} {'Ir/GET':>8} {'%':>6}  {what}")
    for name, ir in items[:top]:
        if len(name) > 130:
            name = name[:127] + "..."
        print(f"  {ir:>12,} {ir / per:>8.1f} {100.0 * ir / total:>6.1f}  {name}")


def main():
    path, top, per = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    self_ir, incl_ir, summary = parse(path)
    total = sum(self_ir.values())
    if summary and abs(total - summary) > summary * 0.01:
        print(f"warning: self costs add up to {total}, the dump says {summary}", file=sys.stderr)
    total = summary or total
    # Self cost by function and by the source the instructions came from, so code
    # inlined into a tokio poll loop still shows where it was written.
    by_self = sorted(
        ((f"{fn}  [{short_file(fi)}]", ir) for (fn, fi), ir in self_ir.items()),
        key=lambda kv: -kv[1],
    )
    by_incl = sorted(incl_ir.items(), key=lambda kv: -kv[1])
    show(f"top {top} functions by self Ir:", by_self, top, per, total)
    print()
    show(f"top {top} functions by inclusive Ir:", by_incl, top, per, total)
    print()
    own = [kv for kv in by_incl if "slotgate::" in kv[0]]
    show(f"top {top} of slotgate's own functions by inclusive Ir:", own, top, per, total)
    print()
    by_origin = defaultdict(int)
    for (_, fi), ir in self_ir.items():
        by_origin[origin(fi)] += ir
    show(
        "self Ir by the source file's origin (inlined code counts where it was written):",
        sorted(by_origin.items(), key=lambda kv: -kv[1]),
        top,
        per,
        total,
        what="origin",
    )


if __name__ == "__main__":
    main()
