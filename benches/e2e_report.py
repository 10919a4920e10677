#!/usr/bin/env python3
"""Summarises the raw runs of benches/e2e.sh into one table, a CSV and a PNG chart.

    e2e_report.py table RAW.csv OUT.csv   prints the table, writes it as CSV (stdlib only)
    e2e_report.py chart OUT.csv OUT.png   bar chart of the table (needs matplotlib)

Raw columns (one row per redis-benchmark run): rep, target, test, pipeline, requests,
wall_s, rps, avg_ms, min_ms, p50_ms, p95_ms, p99_ms, max_ms, slotgate_cpu_s,
servers_cpu_s, bench_errors, proxy_errors, ok, other_cores (CPU used during the run by
processes outside the benchmark, in cores), client_cpu_s (redis-benchmark's own CPU;
absent in files from before it was recorded). Targets: standalone, cluster, slotgate,
a peer proxy (E2E_PEERS: twemproxy, in front of three standalone servers of its own,
whose CPU is in servers_cpu_s and its own in slotgate_cpu_s), and any other name is a
slotgate run with other flags (E2E_VARIANT), treated as slotgate.
"""

import csv
import os
import statistics
import sys

DIRECT = ("standalone", "cluster")
PEERS = ("twemproxy",)


def is_proxy(target):
    """slotgate, a slotgate variant or a peer (any target that is not a server run directly)."""
    return target not in DIRECT


def is_slotgate(target):
    return is_proxy(target) and target not in PEERS

COLUMNS = [
    # (CSV name, table header, width, format)
    ("target", "target", 10, "s"),
    ("test", "test", 5, "s"),
    ("pipeline", "P", 3, "s"),
    ("runs", "runs", 4, "s"),
    ("rps_median", "rps med", 10, ".0f"),
    ("rps_min", "rps min", 10, ".0f"),
    ("rps_max", "rps max", 10, ".0f"),
    ("p50_ms", "p50 ms", 7, ".3f"),
    ("p99_ms", "p99 ms", 7, ".3f"),
    ("slotgate_cpu_s_per_m", "px CPU/M", 9, ".2f"),
    ("servers_cpu_s_per_m", "srv CPU/M", 9, ".2f"),
    ("client_cpu_s_per_m", "cli CPU/M", 9, ".2f"),
    ("proxy_cores", "px cores", 8, ".2f"),
    ("servers_cores", "srv cores", 9, ".2f"),
    ("tput_vs_standalone", "tput/std", 8, ".2f"),
    ("tput_vs_cluster", "tput/clu", 8, ".2f"),
    ("p99_vs_cluster", "p99/clu", 7, ".2f"),
    ("cpu_slotgate_vs_servers", "pxCPU/srv", 9, ".2f"),
    ("cpu_slotgate_vs_direct", "pxCPU/dir", 9, ".2f"),
    ("cpu_slotgate_vs_standalone", "pxCPU/std", 9, ".2f"),
    ("errors", "errors", 6, "s"),
    ("other_cores_max", "other", 5, ".2f"),
]


def median(values):
    return statistics.median(values) if values else None


def summarise(raw_path):
    with open(raw_path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups = {}
    failed = {}
    targets = list(DIRECT)
    for r in rows:
        if r["target"] not in targets:
            targets.append(r["target"])
    bench_errors = {}
    proxy_errors = {}
    for r in rows:
        key = (r["target"], r["test"], int(r["pipeline"]))
        # Failed runs count here too: redis-benchmark 7.0 exits at the first error reply.
        bench_errors[key] = bench_errors.get(key, 0) + int(r["bench_errors"] or 0)
        proxy_errors[key] = proxy_errors.get(key, 0) + int(r["proxy_errors"] or 0)
        if r["ok"] != "1":
            failed[key] = failed.get(key, 0) + 1
            continue
        groups.setdefault(key, []).append(r)

    def fl(r, k):
        return float(r[k])

    out = []
    tests = sorted({k[1] for k in groups} | {k[1] for k in failed}, key=lambda t: (t != "SET", t))
    pipes = sorted({k[2] for k in groups} | {k[2] for k in failed})
    for pipe in pipes:
        for test in tests:
            base = {}
            for target in targets:
                runs = groups.get((target, test, pipe), [])
                row = {"target": target, "test": test, "pipeline": str(pipe)}
                n_failed = failed.get((target, test, pipe), 0)
                row["runs"] = f"{len(runs)}" + (f"+{n_failed}F" if n_failed else "")
                if runs and runs[0].get("other_cores") not in (None, ""):
                    row["other_cores_max"] = max(fl(r, "other_cores") for r in runs)
                if runs:
                    rps = [fl(r, "rps") for r in runs]
                    row["rps_median"] = median(rps)
                    row["rps_min"] = min(rps)
                    row["rps_max"] = max(rps)
                    row["p50_ms"] = median([fl(r, "p50_ms") for r in runs])
                    row["p99_ms"] = median([fl(r, "p99_ms") for r in runs])
                    per_m = lambda r, k: fl(r, k) / fl(r, "requests") * 1e6
                    row["servers_cpu_s_per_m"] = median([per_m(r, "servers_cpu_s") for r in runs])
                    # CPU-seconds per wall second: how many cores the process(es) kept busy.
                    cores = lambda r, k: fl(r, k) / fl(r, "wall_s") if fl(r, "wall_s") > 0 else 0.0
                    row["servers_cores"] = median([cores(r, "servers_cpu_s") for r in runs])
                    if runs[0].get("client_cpu_s") not in (None, ""):
                        row["client_cpu_s_per_m"] = median(
                            [per_m(r, "client_cpu_s") for r in runs]
                        )
                    if is_proxy(target):
                        row["slotgate_cpu_s_per_m"] = median(
                            [per_m(r, "slotgate_cpu_s") for r in runs]
                        )
                        row["proxy_cores"] = median([cores(r, "slotgate_cpu_s") for r in runs])
                        # Per run: slotgate's CPU over the cluster nodes' CPU in that run.
                        ratios = [
                            fl(r, "slotgate_cpu_s") / fl(r, "servers_cpu_s")
                            for r in runs
                            if fl(r, "servers_cpu_s") > 0
                        ]
                        row["cpu_slotgate_vs_servers"] = median(ratios)
                key = (target, test, pipe)
                row["errors"] = str(bench_errors.get(key, 0))
                if is_slotgate(target):
                    row["errors"] += f"/{proxy_errors.get(key, 0)}"
                base[target] = row
                out.append(row)
            clu = base.get("cluster", {})
            for sg in (base[t] for t in targets if is_proxy(t) and t in base):
                for ref, col in (("standalone", "tput_vs_standalone"), ("cluster", "tput_vs_cluster")):
                    if sg.get("rps_median") and base.get(ref, {}).get("rps_median"):
                        sg[col] = sg["rps_median"] / base[ref]["rps_median"]
                if sg.get("p99_ms") is not None and clu.get("p99_ms"):
                    sg["p99_vs_cluster"] = sg["p99_ms"] / clu["p99_ms"]
                # What the servers spend serving the same requests directly: the cluster
                # nodes (--cluster), and one standalone redis-server.
                for ref, col in (("cluster", "cpu_slotgate_vs_direct"), ("standalone", "cpu_slotgate_vs_standalone")):
                    ref_cpu = base.get(ref, {}).get("servers_cpu_s_per_m")
                    if sg.get("slotgate_cpu_s_per_m") is not None and ref_cpu:
                        sg[col] = sg["slotgate_cpu_s_per_m"] / ref_cpu
    return out


def cell(row, name, fmt):
    v = row.get(name)
    if v is None or v == "":
        return "-"
    return format(v, fmt) if fmt != "s" else str(v)


def print_table(rows):
    header = "  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (_, h, w, _) in enumerate(COLUMNS))
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        if last is not None and (r["pipeline"], r["test"]) != last:
            print()
        last = (r["pipeline"], r["test"])
        print(
            "  ".join(
                cell(r, n, f).rjust(w) if i > 1 else cell(r, n, f).ljust(w)
                for i, (n, _, w, f) in enumerate(COLUMNS)
            )
        )
    print(
        "\nrps: requests/s; p50/p99: median over runs of redis-benchmark's percentiles;"
        "\npx CPU/M, srv CPU/M: CPU-seconds (user+sys) per million requests of the row's proxy"
        "\n(slotgate, or a peer) and of the redis-servers in the run (the standalone one, the 3"
        "\ncluster nodes, or a peer's own 3 standalone servers);"
        "\ncli CPU/M: the same for redis-benchmark itself (all share the machine's cores);"
        "\npx cores, srv cores: CPU-seconds per wall second of the proxy and of the servers"
        "\n(median over runs). A process that never waits (the proxy, at -P 1 with 50 clients"
        "\non 2 cores) keeps about the same cores from run to run, so its CPU/M is those"
        "\ncores / the run's throughput: it falls when throughput rises, whatever its work;"
        "\ntput/std, tput/clu: proxy rps / standalone or cluster rps (medians);"
        "\np99/clu: proxy p99 / cluster p99; pxCPU/srv: median over runs of the proxy's CPU /"
        "\nits servers' CPU in the same run (servers behind a proxy get batched requests and"
        "\ncost less than when clients reach them directly); pxCPU/dir: proxy CPU/M / the"
        "\nnodes' CPU/M when redis-benchmark --cluster reaches them directly (cluster row);"
        "\npxCPU/std: proxy CPU/M / the standalone redis-server's CPU/M (standalone row);"
        "\nother slotgate rows: the same proxy with other flags (E2E_VARIANT);"
        "\ntwemproxy (E2E_PEERS): nutcracker sharding over 3 standalone servers of its own;"
        "\nruns: good runs (+nF failed, left out);"
        "\nerrors: runs that got an error reply (redis-benchmark 7.0 stops at the first one)"
        "\nand, after the /, the growth of slotgate's INFO proxy_errors over its runs;"
        "\nother: the most CPU (in cores) that processes outside this benchmark used during"
        "\none of the runs; much above 0.05 the machine was not quiet and numbers are noisy."
    )


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c[0] for c in COLUMNS])
        for r in rows:
            w.writerow(
                [
                    (format(r[n], ".6g") if isinstance(r.get(n), float) else r.get(n, ""))
                    for n, _, _, _ in COLUMNS
                ]
            )


def chart(csv_path, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups = []
    for r in rows:
        g = f"{r['test']} -P {r['pipeline']}"
        if g not in groups:
            groups.append(g)
    targets = []
    for r in rows:
        if r["target"] not in targets:
            targets.append(r["target"])
    palette = {"standalone": "#4c72b0", "cluster": "#55a868", "slotgate": "#c44e52"}
    extra = ["#8172b2", "#ccb974", "#64b5cd"]
    colors = {t: palette.get(t) or extra[i % len(extra)] for i, t in enumerate(targets)}
    light = {"slotgate": "#e8a0a2"}

    def value(r, k):
        return float(r[k]) if r.get(k) not in (None, "") else 0.0

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        by_group = {f"{r['test']} -P {r['pipeline']}": r for r in rows if r["target"] == target}
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(groups))]
        rps = [value(by_group[g], "rps_median") / 1000 if g in by_group else 0 for g in groups]
        lo = [
            (value(by_group[g], "rps_median") - value(by_group[g], "rps_min")) / 1000 if g in by_group else 0
            for g in groups
        ]
        hi = [
            (value(by_group[g], "rps_max") - value(by_group[g], "rps_median")) / 1000 if g in by_group else 0
            for g in groups
        ]
        ax1.bar(xs, rps, width, yerr=[lo, hi], capsize=3, label=target, color=colors[target])
        srv = [value(by_group[g], "servers_cpu_s_per_m") if g in by_group else 0 for g in groups]
        if is_proxy(target):
            sg = [value(by_group[g], "slotgate_cpu_s_per_m") if g in by_group else 0 for g in groups]
            nodes_color = light.get(target, colors[target])
            servers = "its redis-servers" if target in PEERS else "cluster nodes"
            ax2.bar(xs, srv, width, label=f"{target} run: {servers}", color=nodes_color, alpha=0.45)
            ax2.bar(xs, sg, width, bottom=srv, label=f"{target} run: {target}", color=colors[target])
        else:
            ax2.bar(xs, srv, width, label=f"{target}: redis-server(s)", color=colors[target])
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.grid(axis="y", alpha=0.3)
    ax1.set_ylabel("thousand requests/s (median; bars: min-max)")
    ax1.set_title("Throughput")
    ax1.legend()
    ax2.set_ylabel("CPU-seconds per million requests (median)")
    ax2.set_title("CPU per million requests")
    ax2.legend(fontsize=8)
    clients = os.environ.get("E2E_CLIENTS", "50")
    fig.suptitle(f"redis-benchmark -c {clients} -d 64 -r 100000: " + " vs ".join(targets))
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main(argv):
    if len(argv) == 4 and argv[1] == "table":
        rows = summarise(argv[2])
        print_table(rows)
        write_csv(rows, argv[3])
    elif len(argv) == 4 and argv[1] == "chart":
        chart(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
