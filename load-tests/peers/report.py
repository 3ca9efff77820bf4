#!/usr/bin/env python3
"""compare.sh's bookkeeping: one JSON line per measured row, then the markdown tables and the SVG
plots. Standard library only (the SVG is written by hand).

  report.py row --server S --rate R --pairs P --summary F.json --stderr F.err --cpu-ticks T
                --tick HZ --cpu-seconds S --cpu-window 0|1
  report.py rss --server S --rss-kb R0 R1 R2 R3 --sockets N1 N2
  report.py render --rows compare.jsonl --out DIR --command "..."

Cluster mode (compare.sh with CLUSTER=1): the same row, plus the Redis server's counters at the
start and end of the window (`INFO commandstats` and `INFO cpu`, as redis-cli prints them):

  report.py cluster-row (the row's flags) --redis-before F --redis-after F --redis-ticks T
  report.py cluster-render --rows cluster.jsonl --out DIR --command "..."
"""

import argparse
import datetime
import html
import json
import math
import os
import platform
import subprocess
import sys

ORDER = ["coursechat", "node", "socketioxide"]
LABEL = {"coursechat": "coursechat", "node": "Node socket.io 4.8", "socketioxide": "socketioxide 0.18"}
COLOUR = {"coursechat": "#1f77b4", "node": "#2ca02c", "socketioxide": "#d62728"}


def row(a):
    print(json.dumps(row_fields(a, {"kind": "rate"})))


def row_fields(a, out):
    out.update(server=a.server, rate=a.rate, pairs=a.pairs, sockets=2 * a.pairs)
    try:
        with open(a.summary) as f:
            s = json.load(f)
    except (OSError, ValueError):
        with open(a.stderr) as f:
            lines = [l.strip() for l in f if l.strip()]
        out["failed"] = lines[-1] if lines else "generator printed nothing"
        return out
    m, d = s["messages"], s["send_to_deliver"]
    cpu_ms = a.cpu_ticks * 1000.0 / a.tick
    out.update(
        sent_per_s=m["sent_per_second"],
        delivered=m["delivered"],
        delivered_per_s=m["delivered_per_second"],
        undelivered=m["undelivered"],
        unanswered=m["unanswered"],
        seq_gaps=m["seq_gaps"],
        seq_repeats=m["seq_repeats"],
        connected=s["connect"]["connected"],
        deliver_p50_ms=d["p50_ms"],
        deliver_p99_ms=d["p99_ms"],
        ack_p99_ms=s["send_to_ack"]["p99_ms"],
        lag_p99_ms=s.get("send_lag", {}).get("p99_ms"),
        errors=sum(s["errors"].values()),
        error_kinds=s["errors"],
        cpu_ms=cpu_ms,
        cpu_seconds=a.cpu_seconds,
        cpu_window=bool(a.cpu_window),
        cpu_ms_per_delivery=cpu_ms / m["delivered"] if m["delivered"] else None,
        # Cores used by the generator, and by everything else on the machine, over the window.
        # (-1: the generator was gone at the end of the window, so neither is known).
        load_cores=a.load_ticks / a.tick / a.cpu_seconds if a.cpu_seconds > 0 and a.load_ticks >= 0 else None,
        other_cores=max(a.other_ticks, 0) / a.tick / a.cpu_seconds if a.cpu_seconds > 0 and a.load_ticks >= 0
        else None,
    )
    return out


def redis_info(path):
    """{command: (calls, usec)} from INFO commandstats, and used_cpu_user + used_cpu_sys (s)."""
    commands, cpu = {}, 0.0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("cmdstat_"):
                name, _, rest = line[len("cmdstat_"):].partition(":")
                kv = dict(p.split("=", 1) for p in rest.split(","))
                commands[name] = (int(kv["calls"]), int(kv["usec"]))
            elif line.startswith(("used_cpu_user:", "used_cpu_sys:")):
                cpu += float(line.split(":", 1)[1])
    return commands, cpu


# Commands compare.sh itself sends to Redis to measure it, left out of the sums.
OWN_COMMANDS = {"info", "ping", "config|resetstat", "shutdown"}


def cluster_row(a):
    out = row_fields(a, {"kind": "cluster"})
    if "failed" not in out:
        (before, cpu0), (after, cpu1) = redis_info(a.redis_before), redis_info(a.redis_after)
        delta = {}
        for name, (calls, usec) in after.items():
            c0, u0 = before.get(name, (0, 0))
            if name not in OWN_COMMANDS and calls > c0:
                delta[name] = (calls - c0, usec - u0)
        # Messages sent in the window, as the generator counted them.
        with open(a.summary) as f:
            sent = json.load(f)["messages"]["sent"]
        calls = sum(c for c, _ in delta.values())
        usec = sum(u for _, u in delta.values())
        out.update(
            messages_sent=sent,
            redis_calls=calls,
            redis_usec=usec,
            redis_cpu_s=cpu1 - cpu0,
            redis_calls_per_message=calls / sent if sent else None,
            redis_usec_per_message=usec / sent if sent else None,
            redis_cpu_us_per_message=(cpu1 - cpu0) * 1e6 / sent if sent else None,
            redis_cores=a.redis_ticks / a.tick / a.cpu_seconds if a.cpu_seconds > 0 and a.redis_ticks >= 0 else None,
            redis_commands={k: {"calls": c, "usec": u} for k, (c, u) in sorted(delta.items(), key=lambda kv: -kv[1][0])},
        )
    print(json.dumps(out))


def cluster_render(a):
    with open(a.rows) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    rows = [r for r in rows if r["kind"] == "cluster"]
    base = {r["rate"]: r for r in rows if r["server"] == "coursechat" and "failed" not in r}
    rows.sort(key=lambda r: (r["rate"], ORDER.index(r["server"])))
    lines = ["| server (2 nodes) | offered msg/s | sockets | sent/s | delivered/s | send→deliver p99 ms | "
             "CPU-ms per delivery (both nodes) | Redis µs per message (commandstats) | Redis CPU µs per message | "
             "Redis commands per message | p99 vs coursechat | CPU vs coursechat | Redis µs vs coursechat | "
             "Redis CPU vs coursechat | cores: nodes / redis / load / other | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['server']} | {r['rate']} | {r['sockets']} |" + " – |" * 12 +
                         f" run failed: {r['failed'][:80]} |")
            continue
        b = base.get(r["rate"], {})
        problems = [f"{k} {v}" for k, v in sorted(r["error_kinds"].items())]
        if r["unanswered"] or r["undelivered"] or r["seq_gaps"] or r["seq_repeats"]:
            problems.append(f"{r['unanswered']:,} unanswered after the drain, {r['undelivered']} undelivered, "
                            f"seq gaps {r['seq_gaps']}, repeats {r['seq_repeats']}")
        errs = "; ".join(problems) or "none"
        cpu = fmt(r["cpu_ms_per_delivery"], 4) + ("" if r["cpu_window"] else " (whole run)")
        lines.append(
            f"| {r['server']} | {r['rate']} | {r['sockets']} | {fmt(r['sent_per_s'], 0)} | "
            f"{fmt(r['delivered_per_s'], 0)} | {fmt(r['deliver_p99_ms'])} | {cpu} | "
            f"{fmt(r['redis_usec_per_message'], 1)} | {fmt(r['redis_cpu_us_per_message'], 1)} | "
            f"{fmt(r['redis_calls_per_message'], 2)} | "
            f"{ratio(r['deliver_p99_ms'], b.get('deliver_p99_ms'))} | "
            f"{ratio(r['cpu_ms_per_delivery'], b.get('cpu_ms_per_delivery'))} | "
            f"{ratio(r['redis_usec_per_message'], b.get('redis_usec_per_message'))} | "
            f"{ratio(r['redis_cpu_us_per_message'], b.get('redis_cpu_us_per_message'))} | "
            f"{cluster_cores(r)} | {errs} |")
    table = "\n".join(lines)

    # What each server asks of Redis per message, at the highest rate each ran.
    top = {}
    for r in rows:
        if "failed" not in r and r.get("messages_sent"):
            top[r["server"]] = r
    breakdown = []
    for name in (n for n in ORDER if n in top):
        r = top[name]
        breakdown.append(f"**{name}** at {r['rate']} msg/s ({r['messages_sent']:,} messages sent in the window):\n")
        breakdown.append("| command | calls per message | µs per call | µs per message |")
        breakdown.append("| --- | ---: | ---: | ---: |")
        for cmd, v in list(r["redis_commands"].items())[:14]:
            breakdown.append(f"| `{cmd}` | {v['calls'] / r['messages_sent']:.2f} | {v['usec'] / v['calls']:.1f} | "
                             f"{v['usec'] / r['messages_sent']:.1f} |")
        breakdown.append("")
    breakdown = "\n".join(breakdown)

    print(table)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "cluster.md"), "w") as f:
        f.write(f"# coursechat vs peers, two nodes each on one Redis\n\n`{a.command}`, {datetime.date.today()}, "
                f"{machine()}\n\n")
        f.write(table + "\n\n")
        f.write("Redis µs per message is the `usec` of `INFO commandstats` summed over every command in the window "
                "(a script's usec includes the commands it runs, which are counted again under their own names); "
                "Redis CPU µs per message is the server's `used_cpu_user + used_cpu_sys` over the same window. "
                "Both divided by the messages sent in the window.\n\n")
        f.write(breakdown)


def cluster_cores(r):
    """Cores both nodes, Redis, the generator and everything else used over the window."""
    if not r.get("cpu_window") or not r.get("cpu_seconds"):
        return "–"
    nodes = r["cpu_ms"] / 1000 / r["cpu_seconds"]
    return f"{nodes:.2f} / {fmt(r.get('redis_cores'))} / {fmt(r.get('load_cores'))} / {fmt(r.get('other_cores'))}"


def rss(a):
    r0, r1, r2, r3 = a.rss_kb
    n1, n2 = a.sockets
    per = (r3 - r1) / (n2 - n1) if n2 > n1 else None
    sockets_only = (r3 - r2) / (n2 - n1) if n2 > n1 else None
    print(json.dumps({"kind": "rss", "server": a.server, "rss_kb": a.rss_kb, "sockets": a.sockets,
                      "kb_per_socket": per, "kb_per_socket_after_fixtures": sockets_only}))


def fmt(v, digits=2):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(v, base):
    if v is None or not base:
        return "–"
    r = v / base
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def cores(r):
    """Cores the server, the generator and everything else used over the window."""
    if not r.get("cpu_window") or not r.get("cpu_seconds"):
        return "–"
    server = r["cpu_ms"] / 1000 / r["cpu_seconds"]
    return f"{server:.2f} / {fmt(r.get('load_cores'))} / {fmt(r.get('other_cores'))}"


def kept_up(r):
    """Whether the server handled the offered load: every send answered, ~all delivered."""
    return r["unanswered"] == 0 and r["delivered_per_s"] >= 0.98 * r["rate"]


def render(a):
    with open(a.rows) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    rates = [r for r in rows if r["kind"] == "rate"]
    base = {r["rate"]: r for r in rates if r["server"] == "coursechat" and "failed" not in r}
    rates.sort(key=lambda r: (r["rate"], ORDER.index(r["server"])))

    lines = ["| server | offered msg/s | sockets | sent/s | delivered/s | send→deliver p99 ms | "
             "server CPU-ms per delivery | p99 vs coursechat | CPU vs coursechat | cores: server / load / other | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rates:
        if "failed" in r:
            lines.append(f"| {r['server']} | {r['rate']} | {r['sockets']} | – | – | – | – | – | – | – | "
                         f"run failed: {r['failed'][:80]} |")
            continue
        b = base.get(r["rate"], {})
        problems = [f"{k} {v}" for k, v in sorted(r["error_kinds"].items())]
        if r["unanswered"] or r["undelivered"] or r["seq_gaps"] or r["seq_repeats"]:
            problems.append(f"{r['unanswered']:,} unanswered after the drain, {r['undelivered']} undelivered, "
                            f"seq gaps {r['seq_gaps']}, repeats {r['seq_repeats']}")
        errs = "; ".join(problems) or "none"
        cpu = fmt(r["cpu_ms_per_delivery"], 4) + ("" if r["cpu_window"] else " (whole run)")
        lines.append(
            f"| {r['server']} | {r['rate']} | {r['sockets']} | {fmt(r['sent_per_s'], 0)} | "
            f"{fmt(r['delivered_per_s'], 0)} | {fmt(r['deliver_p99_ms'])} | {cpu} | "
            f"{ratio(r['deliver_p99_ms'], b.get('deliver_p99_ms'))} | "
            f"{ratio(r['cpu_ms_per_delivery'], b.get('cpu_ms_per_delivery'))} | {cores(r)} | {errs} |")
    table = "\n".join(lines)

    rss_rows = sorted((r for r in rows if r["kind"] == "rss"), key=lambda r: ORDER.index(r["server"]))
    rss_table = ""
    if rss_rows:
        rbase = next((r["kb_per_socket"] for r in rss_rows if r["server"] == "coursechat"), None)
        out = ["| server | idle sockets | RSS MiB | KiB per idle socket | vs coursechat | "
               "KiB per socket, pairs' fixtures excluded |",
               "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rss_rows:
            n1, n2 = r["sockets"]
            _, r1, _, r3 = r["rss_kb"]
            out.append(f"| {r['server']} | {n1:,} → {n2:,} | {r1 / 1024:.0f} → {r3 / 1024:.0f} | "
                       f"{fmt(r['kb_per_socket'], 1)} | {ratio(r['kb_per_socket'], rbase)} | "
                       f"{fmt(r['kb_per_socket_after_fixtures'], 1)} |")
        rss_table = "\n".join(out)

    print(table)
    if rss_table:
        print()
        print(rss_table)

    os.makedirs(a.out, exist_ok=True)
    series = lambda key: {s: [(r["rate"], r[key], kept_up(r)) for r in rates if r["server"] == s
                              and "failed" not in r and r.get(key) is not None] for s in ORDER}
    line_chart("send→deliver p99 against offered load", "p99 send→deliver (ms)", series("deliver_p99_ms"),
               os.path.join(a.out, "p99.svg"))
    line_chart("server CPU time per delivered message", "CPU-ms per delivery", series("cpu_ms_per_delivery"),
               os.path.join(a.out, "cpu.svg"))
    with open(os.path.join(a.out, "compare.md"), "w") as f:
        f.write(f"# coursechat vs peers\n\n`{a.command}`, {datetime.date.today()}, {machine()}\n\n")
        f.write(table + "\n")
        if rss_table:
            f.write("\n" + rss_table + "\n")
        f.write("\n![p99](p99.svg) ![cpu](cpu.svg)\n")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        node = "?"
    return f"{os.cpu_count()} vCPU ({cpu}), Linux {platform.release()}, node {node}"


def nice_ticks(lo, hi, log):
    if log:
        ticks = []
        e = math.floor(math.log10(lo))
        while 10 ** e <= hi * 1.0001:
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo * 0.9999 <= v <= hi * 1.0001:
                    ticks.append(v)
            e += 1
        return ticks
    span = hi - lo or 1
    step = 10 ** math.floor(math.log10(span / 5))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= 6:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def line_chart(title, ylabel, series, path):
    w, h, left, right, top, bottom = 640, 400, 70, 170, 40, 50
    pts = [p for ps in series.values() for p in ps]
    if not pts:
        return
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = 0, max(xs) * 1.05
    ylo, yhi = min(ys), max(ys)
    log = ylo > 0 and yhi / ylo > 20
    if log:
        y0, y1 = 10 ** math.floor(math.log10(ylo)), 10 ** math.ceil(math.log10(yhi))
    else:
        y0, y1 = 0, yhi * 1.1 or 1
    pw, ph = w - left - right, h - top - bottom
    sx = lambda x: left + (x - x0) / (x1 - x0) * pw
    if log:
        sy = lambda y: top + ph - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) * ph
    else:
        sy = lambda y: top + ph - (y - y0) / (y1 - y0) * ph
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="15">{e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for t in nice_ticks(y0, y1, log):
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in nice_ticks(x0, x1, False):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 12}" text-anchor="middle">offered load (msg/s)</text>')
    out.append(f'<text transform="translate(18 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'{e(ylabel)}{" (log scale)" if log else ""}</text>')
    for i, (name, ps) in enumerate((n, series[n]) for n in ORDER if series.get(n)):
        ps = sorted(ps)
        c = COLOUR[name]
        path_d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y, _) in enumerate(ps))
        out.append(f'<path d="{path_d}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y, ok in ps:
            fill = c if ok else "white"
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{fill}" stroke="{c}" '
                       f'stroke-width="2"><title>{e(name)} {x:g} msg/s: {y:.4g}'
                       f'{"" if ok else " (did not keep up)"}</title></circle>')
        ly = top + 10 + i * 20
        out.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 32}" y1="{ly}" y2="{ly}" stroke="{c}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 38}" y="{ly + 4}">{e(LABEL[name])}</text>')
    if any(not ok for ps in series.values() for _, _, ok in ps):
        ly = top + 10 + len([n for n in ORDER if series.get(n)]) * 20 + 6
        out.append(f'<circle cx="{left + pw + 22}" cy="{ly}" r="4" fill="white" stroke="#555" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 38}" y="{ly + 4}">did not keep up</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("row")
    r.add_argument("--server", required=True)
    r.add_argument("--rate", type=int, required=True)
    r.add_argument("--pairs", type=int, required=True)
    r.add_argument("--summary", required=True)
    r.add_argument("--stderr", required=True)
    r.add_argument("--cpu-ticks", type=int, required=True)
    r.add_argument("--tick", type=int, required=True)
    r.add_argument("--cpu-seconds", type=float, required=True)
    r.add_argument("--cpu-window", type=int, required=True)
    r.add_argument("--load-ticks", type=int, default=0)
    r.add_argument("--other-ticks", type=int, default=0)
    s = sub.add_parser("rss")
    s.add_argument("--server", required=True)
    s.add_argument("--rss-kb", type=int, nargs=4, required=True)
    s.add_argument("--sockets", type=int, nargs=2, required=True)
    d = sub.add_parser("render")
    d.add_argument("--rows", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--command", default="load-tests/compare.sh")
    c = sub.add_parser("cluster-row", parents=[r], add_help=False)
    c.add_argument("--redis-before", required=True)
    c.add_argument("--redis-after", required=True)
    c.add_argument("--redis-ticks", type=int, default=-1)
    cr = sub.add_parser("cluster-render")
    cr.add_argument("--rows", required=True)
    cr.add_argument("--out", required=True)
    cr.add_argument("--command", default="CLUSTER=1 load-tests/compare.sh")
    a = p.parse_args()
    {"row": row, "rss": rss, "render": render, "cluster-row": cluster_row, "cluster-render": cluster_render}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
