#!/usr/bin/env python3
"""Turns bench/run's results.jsonl into the Markdown table of BENCHMARKS.md and checks the targets.

usage: report.py results.jsonl [--mode full|quick|smoke] [--main-n 100000]
Exit status: 1 if any measurement had errors or torn rows, or (smoke) a scenario did not run.
The targets are reported, never enforced: missing one does not fail the run.
"""
import json
import sys


def main():
    path = sys.argv[1]
    mode = "full"
    main_n = 100000
    args = sys.argv[2:]
    meta = None
    for i, a in enumerate(args):
        if a == "--meta":
            meta = json.load(open(args[i + 1]))
        if a == "--mode":
            mode = args[i + 1]
        if a == "--main-n":
            main_n = int(args[i + 1])
    rows = [json.loads(line) for line in open(path) if line.strip()]
    ceilings = [r for r in rows if r.get("backend") == "ceiling"]
    ceil_rps = sum(r["rps"] for r in ceilings) / max(len(ceilings), 1)
    ceil_p99 = sum(r["p99_ms"] for r in ceilings) / max(len(ceilings), 1)
    out = []
    p = out.append
    if meta:
        p(f"Run: {meta['mode']}, {meta['date']}, commit {meta['commit']}"
          + (f" with uncommitted changes in {meta['uncommitted'].strip()}" if meta['uncommitted'].strip() else "")
          + f"; binary built {meta['binary_built']}; {meta['cpu']}, {meta['cores']} cores, {meta['memory']},"
          f" Linux {meta['kernel']}; load average at start {meta['loadavg_start']}"
          + (f", at end {meta['loadavg_end']}; {meta['run_seconds']} s" if 'loadavg_end' in meta else "") + ".")
        p("")

    def ratio(x, base):
        if not base:
            return "n/a"
        r = x / base
        return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"

    p("| backend | users | scenario | req/s | × ceiling | p50 ms | p99 ms | p99 × ceiling | errors | peak RSS MiB |")
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "rps" not in r:
            continue
        mib = r.get("peak_rss_kib", 0) / 1024
        label = r["label"]
        p(f"| {r['backend']} | {r['n']:,} | {label} | {r['rps']:,.0f} | {ratio(r['rps'], ceil_rps)} | "
          f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio(r['p99_ms'], ceil_p99)} | {r['errors']} | {mib:.1f} |")
        if len(r.get("classes", [])) > 1:
            for c in r["classes"]:
                p(f"| {r['backend']} | {r['n']:,} | {label}: {c['class']} | {c['rps']:,.0f} | {ratio(c['rps'], ceil_rps)} | "
                  f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {ratio(c['p99_ms'], ceil_p99)} | {c['errors']} | |")
    p("")
    p("| backend | users | other measurement | value |")
    p("|---|---:|---|---|")
    for r in rows:
        if r["scenario"] == "seed":
            p(f"| {r['backend']} | {r['n']:,} | seeding (one transaction, INSERT … SELECT) | {r['seconds']:.2f} s |")
        elif r["scenario"] == "webhook_drain":
            p(f"| {r['backend']} | {r['n']:,} | webhook drain after the run / torn rows | "
              f"{r['drain_s']:.2f} s / {r['torn_rows']} of {r['subscriptions_touched']:,} subscriptions "
              f"(stored: {r['db_states']}) |")
        elif r["scenario"] == "webhook_refetch":
            p(f"| {r['backend']} | {r['n']:,} | {r['label']}: {r['events']} invoice.paid events, each a re-fetch | "
              f"{r['accepted']} accepted in {r['send_s']:.2f} s, all applied {r['drain_s']:.2f} s later "
              f"(acceptance to applied p99 {r['applied_p99_s']} s; stored: {r['db_states']}) |")
        elif r["scenario"] == "coldstart":
            runs = ", ".join(f"{x:.0f}" for x in r["runs_ms"])
            p(f"| {r['backend']} | {r['n']:,} | cold start to /readyz 200, median | {r['median_ms']:.1f} ms (runs: {runs}) |")
        elif r["scenario"] == "skipped":
            p(f"| {r['backend']} | | SKIPPED (no server) | |")
    p("")

    # --- targets -----------------------------------------------------------------------------------
    def find(backend, n, label):
        for r in rows:
            if r.get("backend") == backend and r.get("n") == n and r.get("label") == label:
                return r
        return None

    checks = []

    def check(name, ok, value):
        checks.append((name, ok, value))

    backends = sorted({r["backend"] for r in rows if r.get("backend") not in (None, "ceiling")
                       and r["scenario"] != "skipped"})
    sizes = sorted({r["n"] for r in rows if r.get("label") == "entitlement"})
    for b in backends:
        e = find(b, main_n, "entitlement")
        if e:
            check(f"{b}: entitlement ≥ 60 % of ceiling req/s at {main_n:,}", e["rps"] >= 0.6 * ceil_rps,
                  f"{e['rps'] / ceil_rps:.0%}")
            check(f"{b}: entitlement p99 < 10 ms at {main_n:,}", e["p99_ms"] < 10, f"{e['p99_ms']:.2f} ms")
        small, big = find(b, min(sizes), "entitlement"), find(b, max(sizes), "entitlement")
        if small and big and max(sizes) >= 1_000_000:
            drop = 1 - big["rps"] / small["rps"]
            check(f"{b}: entitlement at {max(sizes):,} within 15 % of {min(sizes):,}", abs(drop) <= 0.15,
                  f"{-drop:+.0%} req/s")
        small, big = find(b, min(sizes), "entitlement_nocache"), find(b, max(sizes), "entitlement_nocache")
        if small and big and max(sizes) >= 1_000_000:
            drop = 1 - big["rps"] / small["rps"]
            check(f"({b}: the same with the cache off, for information)", abs(drop) <= 0.15, f"{-drop:+.0%} req/s")
        s = find(b, main_n, "dev_status")
        if s:
            check(f"{b}: /dev/status ≥ 40 % of ceiling", s["rps"] >= 0.4 * ceil_rps, f"{s['rps'] / ceil_rps:.0%}")
        w, d = find(b, main_n, "webhook"), find(b, main_n, "webhook drain")
        if w:
            floor = 5000 if b == "sqlite" else 3000
            check(f"{b}: webhook ≥ {floor:,} events/s accepted", w["rps"] >= floor, f"{w['rps']:,.0f}/s")
            inline = set(w.get("states", {})) <= {"applied"}
            # Applied before the 200 (the answer's state): acceptance-to-applied ≤ the request's latency.
            bound = w["p99_ms"] if inline else max(w["p99_ms"], (d or {}).get("drain_s", 0) * 1000)
            check(f"{b}: webhook p99 acceptance-to-applied < 1 s", bound < 1000,
                  f"≤ {bound:.0f} ms ({'applied before the answer' if inline else 'some applied later: bounded by the drain'})")
            errs = w["errors"] + (d["torn_rows"] if d else 1)
            check(f"{b}: webhook 0 errors, 0 torn rows", errs == 0,
                  f"{w['errors']} errors, {d['torn_rows'] if d else '?'} torn")
        peaks = [r.get("peak_rss_kib", 0) for r in rows if r.get("backend") == b and r.get("n") == main_n]
        if peaks:
            check(f"{b}: peak RSS ≤ 40 MiB at {main_n:,}", max(peaks) <= 40 * 1024, f"{max(peaks) / 1024:.1f} MiB")
        admins = [r for r in rows if r.get("backend") == b and r.get("label", "").startswith("admin")
                  and not r["label"].endswith("_1conn")]
        if admins:
            worst = max(a["p99_ms"] for a in admins)
            check(f"{b}: admin page p99 < 50 ms at {main_n:,}", worst < 50, f"worst {worst:.1f} ms")
        c = find(b, main_n, "coldstart")
        if c:
            check(f"{b}: cold start < 200 ms", c["median_ms"] < 200, f"{c['median_ms']:.0f} ms")
    p("| target | met | measured |")
    p("|---|---|---|")
    for name, ok, value in checks:
        p(f"| {name} | {'yes' if ok else '**no**'} | {value} |")
    print("\n".join(out))

    errors = sum(r.get("errors", 0) for r in rows)
    failed = errors > 0
    if mode == "smoke":
        labels = {r.get("label") for r in rows}
        wanted = {"ceiling", "entitlement", "entitlement_nocache", "dev_status", "admin_status_active", "admin_q_prefix",
                  "admin_q_prefix_htmx", "admin_q_prefix_1conn", "webhook", "webhook drain",
                  "webhook refetch (rate limited)", "coldstart", "seed"}
        missing = wanted - labels
        if missing:
            print(f"smoke: scenarios that did not run: {sorted(missing)}", file=sys.stderr)
            failed = True
    if errors:
        print(f"FAILED: {errors} errors (or torn rows) in the measurements above", file=sys.stderr)
    else:
        print("all measurements: 0 errors, 0 torn rows", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
