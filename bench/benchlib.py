#!/usr/bin/env python3
"""Switchyard benchmark helpers (stdlib only), called by bench/run.sh and bench/ab.sh.

  benchlib.py wrk FILE KEY=VAL...      parse a wrk run, append one JSON line to $RESULTS
  benchlib.py h2load FILE LOG KEY=VAL...  parse an h2load run and its per-request log
  benchlib.py failover KEY=VAL...      fixed-rate load with a fault injected mid-run
  benchlib.py report DIR               print the tables; write DIR/RESULTS.md
  benchlib.py ab FILE                  bench/ab.sh's summary of its rounds
"""

import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(text):
    """'451.00us' -> 0.451 (milliseconds)."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def kv(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def append(record):
    with open(os.environ["RESULTS"], "a") as f:
        f.write(json.dumps(record) + "\n")


def parse_wrk(path, meta):
    text = open(path).read()
    rec = dict(meta)
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    rec["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        rec[f"p{pct}"] = ms(m.group(1)) if m else None
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    rec["max"] = ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    rec["requests"] = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    rec["errors"] = errors
    append(rec)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[i]


def parse_h2load(path, log, meta):
    text = open(path).read()
    rec = dict(meta)
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    rec["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    rec["requests"] = int(m.group(3)) if m else 0
    rec["errors"] = (int(m.group(4)) + int(m.group(6))) if m else 0
    m = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        rec["errors"] += int(m.group(1)) + int(m.group(2))
    durations = []
    try:
        with open(log) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3:
                    durations.append(int(cols[2]) / 1000.0)
    except OSError:
        pass
    durations.sort()
    rec["p50"] = percentile(durations, 50)
    rec["p99"] = percentile(durations, 99)
    rec["max"] = durations[-1] if durations else None
    append(rec)


# ---------------------------------------------------------------- failover load client


async def one_request(reader, writer, req):
    writer.write(req)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before the response")
    status = int(status_line.split()[1])
    length, chunked, region = 0, False, None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "x-region":
            region = value
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, region


async def failover_worker(cfg, start, end, offset, samples):
    interval = cfg["conns"] / cfg["rate"]
    req = f"GET /item HTTP/1.1\r\nHost: {cfg['host']}:{cfg['port']}\r\n\r\n".encode()
    conn = None
    n = 0
    while True:
        slot = start + offset + n * interval
        n += 1
        if slot >= end:
            break
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.monotonic()
        ok, region = False, None
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(cfg["host"], cfg["port"]), cfg["timeout"]
                )
            status, region = await asyncio.wait_for(
                one_request(conn[0], conn[1], req), cfg["timeout"]
            )
            ok = status == 200
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError, IndexError,
                asyncio.IncompleteReadError):
            if conn is not None:
                conn[1].close()
            conn = None
        samples.append((t0, time.monotonic(), ok, region))
    if conn is not None:
        conn[1].close()


async def failover_main(cfg):
    samples = []
    start = time.monotonic() + 0.05
    end = start + cfg["before"] + cfg["after"]
    fault_at = start + cfg["before"]

    async def inject():
        await asyncio.sleep(max(0.0, fault_at - time.monotonic()))
        os.kill(cfg["pid"], getattr(signal, cfg["signal"]))
        return time.monotonic()

    step = cfg["conns"] / cfg["rate"] / cfg["conns"]
    workers = [failover_worker(cfg, start, end, i * step, samples) for i in range(cfg["conns"])]
    results = await asyncio.gather(inject(), *workers)
    return samples, results[0]


def failover(args):
    cfg = {"host": "127.0.0.1", "rate": 1500, "conns": 16, "before": 2.0, "after": 4.0,
           "timeout": 10.0, "signal": "SIGKILL"}
    cfg.update(kv(args))
    for key in ("rate", "conns", "port", "pid"):
        cfg[key] = int(cfg[key])
    for key in ("before", "after", "timeout"):
        cfg[key] = float(cfg[key])
    samples, fault = asyncio.run(failover_main(cfg))
    before = sorted((e - s) * 1000 for s, e, ok, _ in samples if e < fault and ok)
    normal = max(20.0, 3 * (percentile(before, 99) or 1.0))
    after = [x for x in samples if x[1] >= fault]
    failed = sum(1 for x in samples if not x[2])
    first_b = min((e for s, e, ok, r in after if ok and r == "b"), default=None)
    # Settled: the end of the last request that failed or was slow, among those the fault touched.
    bad_ends = [e for s, e, ok, r in after if not ok or (e - s) * 1000 > normal]
    settled = max(bad_ends) if bad_ends else fault
    rec = dict(kv(args))
    rec.update({
        "kind": "failover",
        "requests": len(samples),
        "failed": failed,
        "slowest_ms": round(max((e - s) * 1000 for s, e, _, _ in samples), 1) if samples else None,
        "first_b_ms": round((first_b - fault) * 1000, 1) if first_b else None,
        "settled_ms": round((settled - fault) * 1000, 1),
        "from_a_after_fault": sum(1 for x in after if x[3] == "a" and x[0] > fault),
    })
    append(rec)
    print(json.dumps(rec))


# ---------------------------------------------------------------- report

PROXIES = ["switchyard", "haproxy", "nginx"]
NAMES = {"direct": "direct", "switchyard": "Switchyard", "haproxy": "HAProxy", "nginx": "nginx",
         "switchyard+plugin": "Switchyard + plugin"}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


PLUGIN_ROUND_BASE = 100


def plugin_ratio(load, key):
    """Median over rounds of (Switchyard + plugin) / Switchyard, each round's pair run back to back."""
    by_round = {}
    for r in load:
        if (r["proto"], r["method"], r["conns"]) == key and r["rps"]:
            by_round.setdefault(r["round"], {})[r["target"]] = r["rps"]
    pairs = [p["switchyard+plugin"] / p["switchyard"] for p in by_round.values()
             if "switchyard+plugin" in p and "switchyard" in p]
    if not pairs:
        return "-"
    return f"{statistics.median(pairs):.2f}x ({len(pairs)} pairs)"


def report(directory):
    records = [json.loads(l) for l in open(os.path.join(directory, "results.jsonl")) if l.strip()]
    every_load = [r for r in records if r.get("kind") == "load"]
    # Rounds from PLUGIN_ROUND_BASE on only pair Switchyard with Switchyard + plugin, to
    # resolve a few percent; every other column uses the main rounds alone.
    load = [r for r in every_load if r["round"] < PLUGIN_ROUND_BASE]
    meta = json.load(open(os.path.join(directory, "meta.json")))
    out = []
    w = out.append
    w("# Switchyard vs HAProxy vs nginx: results\n")
    w(f"Date: {meta['date']}. Machine: {meta['machine']}. {meta['rounds']} interleaved rounds of "
      f"{meta['duration']} per point, medians. Every proxy and region runs one worker; the load "
      "generator shares the same cores. Direct = the load generator straight to region a (the limit).\n")
    w("Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "\n")

    scenarios = []
    for r in load:
        key = (r["proto"], r["method"], r["conns"])
        if key not in scenarios:
            scenarios.append(key)
    targets = [t for t in ["direct", "switchyard", "switchyard+plugin", "haproxy", "nginx"]
               if any(r["target"] == t for r in load)]

    def pick(target, key, field):
        return med([r.get(field) for r in load
                    if r["target"] == target and (r["proto"], r["method"], r["conns"]) == key])

    w("## Throughput (requests/s, median)\n")
    w("| scenario | " + " | ".join(NAMES[t] for t in targets)
      + " | SY/direct | HAProxy/direct | nginx/direct | SY/HAProxy | SY/nginx | SY+plugin/SY |")
    w("|" + "---|" * (len(targets) + 7))
    for key in scenarios:
        row = {t: pick(t, key, "rps") for t in targets}
        label = f"{key[0]} {key[1]} c={key[2]}"
        cells = [fmt(row[t]) for t in targets]
        sy, d = row.get("switchyard"), row.get("direct")
        cells += [ratio(sy, d), ratio(row.get("haproxy"), d), ratio(row.get("nginx"), d),
                  ratio(sy, row.get("haproxy")), ratio(sy, row.get("nginx")),
                  plugin_ratio(every_load, key)]
        w(f"| {label} | " + " | ".join(cells) + " |")
    w("")
    w("## Latency (ms, median of rounds): p50 / p99 / max\n")
    w("| scenario | " + " | ".join(NAMES[t] for t in targets) + " | SY p50 / HAProxy | SY p50 / nginx |")
    w("|" + "---|" * (len(targets) + 3))
    for key in scenarios:
        cells = []
        for t in targets:
            p50, p99, mx = (pick(t, key, f) for f in ("p50", "p99", "max"))
            cells.append(f"{fmt(p50)} / {fmt(p99)} / {fmt(mx, 1)}")
        sy = pick("switchyard", key, "p50")
        cells.append(ratio(sy, pick("haproxy", key, "p50")))
        cells.append(ratio(sy, pick("nginx", key, "p50")))
        w(f"| {key[0]} {key[1]} c={key[2]} | " + " | ".join(cells) + " |")
    w("")
    errors = {t: sum(r.get("errors", 0) for r in load if r["target"] == t) for t in targets}
    w("Failed requests during load runs (all rounds): "
      + ", ".join(f"{NAMES[t]} {errors[t]}" for t in targets) + "\n")

    cpu = [r for r in records if r.get("kind") == "cpu"]
    if cpu:
        w("## Proxy CPU per request (µs of user+system CPU, median; lower is better)\n")
        ctargets = [t for t in targets if t != "direct"]
        w("| scenario | " + " | ".join(NAMES[t] for t in ctargets) + " |")
        w("|" + "---|" * (len(ctargets) + 1))
        cpu = [r for r in cpu if r["round"] < PLUGIN_ROUND_BASE]
        for key in scenarios:
            cells = []
            for t in ctargets:
                cells.append(fmt(med([r["us_per_req"] for r in cpu if r["target"] == t
                                      and (r["proto"], r["method"], r["conns"]) == key]), 1))
            w(f"| {key[0]} {key[1]} c={key[2]} | " + " | ".join(cells) + " |")
        w("")

    mem = [r for r in records if r.get("kind") == "memory"]
    if mem:
        w("## Resident memory (MiB)\n")
        w("| process | idle | peak under load |")
        w("|---|---|---|")
        for r in mem:
            w(f"| {r['label']} | {fmt(r.get('idle_mib'), 1)} | {fmt(r.get('load_mib'), 1)} |")
        w("")

    fo = [r for r in records if r.get("kind") == "failover"]
    if fo:
        w("## Failover under steady load\n")
        w(f"{meta['failover']}\n")
        w("| proxy | fault | rounds | requests | failed | slowest (ms) | first answer from b (ms) | settled (ms) |")
        w("|---|---|---|---|---|---|---|---|")
        for p in PROXIES:
            for fault in ("kill", "blackhole"):
                rs = [r for r in fo if r["target"] == p and r["fault"] == fault]
                if not rs:
                    continue
                w(f"| {NAMES[p]} | {fault} | {len(rs)} | {sum(r['requests'] for r in rs)} | "
                  f"{sum(r['failed'] for r in rs)} | {fmt(max(r['slowest_ms'] for r in rs), 1)} | "
                  f"{fmt(med([r['first_b_ms'] for r in rs]), 1)} | {fmt(med([r['settled_ms'] for r in rs]), 1)} |")
        w("")
        w("Failed = connection errors and non-200 answers over all rounds; slowest = the worst "
          "request of any round; first answer from b = median time from the fault to the first "
          "response from region b; settled = median time from the fault to the end of the last "
          "request that failed or was slower than max(20 ms, 3x the pre-fault p99).\n")

    pending = meta.get("pending")
    if pending:
        w(f"Pending: {pending}\n")
    w("## Commands\n")
    w("```")
    for c in meta["commands"]:
        w(c)
    w("```")
    text = "\n".join(out) + "\n"
    with open(os.path.join(directory, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)


def ab(path):
    """bench/ab.sh's summary: medians per side and NEW/OLD ratios, per connection count."""
    hz = os.sysconf("SC_CLK_TCK")
    rows = [json.loads(l) for l in open(path) if l.strip()]
    for r in rows:
        r["cpu_us"] = r["ticks"] / hz * 1e6 / max(r["requests"], 1)
    for conns in sorted({r["conns"] for r in rows}, reverse=True):
        print(f"--- {conns} connection(s), {max(r['round'] for r in rows)} rounds")
        m = {}
        for name in ("old", "new"):
            rs = [r for r in rows if r["name"] == name and r["conns"] == conns]
            m[name] = {k: med([r[k] for r in rs]) for k in ("rps", "p50", "cpu_us")}
            print(f"{name}: req/s {m[name]['rps']:9.0f}  p50 {m[name]['p50']:.3f} ms  "
                  f"CPU/req {m[name]['cpu_us']:.1f} us")
        by_round = {}
        for r in rows:
            if r["conns"] == conns:
                by_round.setdefault(r["round"], {})[r["name"]] = r["rps"]
        spread = sorted(p["new"] / p["old"] for p in by_round.values()
                        if p.get("old") and p.get("new"))
        print(f"new/old: req/s {m['new']['rps'] / m['old']['rps']:.3f} "
              f"(per round {spread[0]:.2f}-{spread[-1]:.2f}), "
              f"p50 {m['new']['p50'] / m['old']['p50']:.3f}, "
              f"CPU/req {m['new']['cpu_us'] / m['old']['cpu_us']:.3f}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wrk":
        parse_wrk(args[0], kv(args[1:]))
    elif cmd == "h2load":
        parse_h2load(args[0], args[1], kv(args[2:]))
    elif cmd == "failover":
        failover(args)
    elif cmd == "report":
        report(args[0])
    elif cmd == "ab":
        ab(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
