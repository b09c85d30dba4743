#!/usr/bin/env python3
"""Prints the ingest bench table from the results bench/ingest.sh collected.

Input: one tab-separated line per measured run:
scenario, side, round, peak RSS KiB, simulate summary JSON, replyd admin summary JSON or "null".
Figures are medians over rounds; "non-2xx" adds up every round so a single bad round shows.
"""

import json
import statistics
import sys


def stored_per_s(side, summary, stored):
    """Unique messages in the store per second, from the first POST until the last was stored.

    The store-ceiling sides write synchronously: what they wrote is stored. A server run needs
    the admin summary polled after the run (`inbound`, `stored_at`) and the run's start.
    """
    if side.startswith("store-"):
        return summary["messages_per_s"]
    if not isinstance(stored, dict) or "stored_at" not in stored or "started_at" not in summary:
        return None
    took = stored["stored_at"] - summary["started_at"]
    return stored.get("inbound", 0) / took if took > 0 else None


def main(path):
    runs = {}
    order = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            scenario, side, _round, rss_kib, summary, stored = line.rstrip("\n").split("\t")
            key = (scenario, side)
            if key not in runs:
                runs[key] = []
                order.append(key)
            runs[key].append((int(rss_kib or 0), json.loads(summary), json.loads(stored)))

    header = ["scenario", "side", "req/s", "msgs/s", "stored/s", "p50 ms", "p99 ms", "max ms",
              "peak RSS MiB", "non-2xx", "req/s vs bare"]
    rows = []
    notes = []
    for scenario, side in order:
        group = runs[(scenario, side)]
        med = lambda field: statistics.median(s[field] for _, s, _ in group)
        rps = med("requests_per_s")
        bare = runs.get((scenario, "bare"))
        if side == "bare" or not bare:
            versus = "-"
        else:
            bare_rps = statistics.median(s["requests_per_s"] for _, s, _ in bare)
            versus = f"{100.0 * rps / bare_rps:.0f}%" if bare_rps else "-"
        non_2xx = sum(s["status_4xx"] + s["status_5xx"] + s["transport_errors"] for _, s, _ in group)
        stored_rates = [stored_per_s(side, s, stored) for _, s, stored in group]
        stored_rates = [r for r in stored_rates if r is not None]
        stored_cell = f"{statistics.median(stored_rates):,.0f}" if stored_rates else "-"
        rows.append([
            scenario, side, f"{rps:,.0f}", f"{med('messages_per_s'):,.0f}", stored_cell,
            f"{med('latency_p50_ms'):.2f}", f"{med('latency_p99_ms'):.2f}",
            f"{med('latency_max_ms'):.1f}",
            f"{statistics.median(rss for rss, _, _ in group) / 1024:.1f}", str(non_2xx), versus,
        ])
        # A 200 promises a durable write: the store must hold every acknowledged unique message.
        for i, (_, s, stored) in enumerate(group, 1):
            inbound = stored.get("inbound") if isinstance(stored, dict) else None
            if side != "bare" and s["status_2xx"] == s["requests_sent"] and inbound is not None \
                    and inbound != s["messages_sent"]:
                notes.append(f"{scenario}, {side}, round {i}: store holds {inbound} inbound "
                             f"messages, {s['messages_sent']} were acknowledged")

    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    for note in notes:
        print("WARNING:", note)


if __name__ == "__main__":
    main(sys.argv[1])
