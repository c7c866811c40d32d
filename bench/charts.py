"""PNG charts of bench/run.py's main comparisons, drawn with Debian's python3-matplotlib.

One function per chart; each takes the results its benchmark already computes, in the
form bench/run.py saves them to bench/img/results.json (so `bench/run.py --charts-only`
redraws every chart from that file), and writes one PNG:

  cpu_per_request(part, path)  (tls, plain, handoff) dingo's server CPU per request as
                               a multiple of the peer's, one bar per variant;
  fanout_p99(part, path)       (fanout) publish-to-delivery p99 against offered
                               deliveries/s, dingo beside Node.js with ws;
  idle_memory(part, path)      (idle) workers' RSS per idle WebSocket, plain and TLS,
                               with the target;
  storm_arrivals(part, path)   (storm) connection attempts reaching the gateway per
                               second (100 ms buckets) after a restart, one panel per
                               outage, one line per reconnect policy.

Each `part` is {"command": ..., "date": ..., ...}: the command and date are printed under
the chart, so a picture always says which run it shows.
"""
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

DINGO = "#1f77b4"
PEER = "#ff7f0e"
POLICY_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")


def _footer(fig, part):
    text = textwrap.fill(f"{part['date']} · {part['command']}", width=int(fig.get_figwidth() * 17),
                         break_on_hyphens=False)
    fig.text(0.01, 0.005, text, fontsize=7, color="#555555", ha="left", va="bottom")


def _save(fig, path):
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_per_request(part, path):
    """Dingo's CPU per request as a multiple of the peer's, one bar per variant, each
    labelled with both absolute figures (the variants span 10 µs to 1 ms)."""
    rows = part["rows"]
    ratios = [r["dingo_cpu_us"] / max(r["peer_cpu_us"], 1e-9) for r in rows]
    fig, ax = plt.subplots(figsize=(9.5, 1.2 + 0.5 * len(rows)))
    y = list(range(len(rows)))
    ax.barh(y, ratios, 0.6, color=[DINGO if q <= 1 else PEER for q in ratios])
    ax.axvline(1.0, color="#333333", lw=1)
    for i, (r, q) in enumerate(zip(rows, ratios)):
        ax.text(q + 0.02, i, f"{q:.2f}×  ({r['dingo_cpu_us']:.1f} µs against {r['peer_cpu_us']:.1f} µs)",
                va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['bench']}: {r['variant']}" + ("" if r["peer"] == "nginx" else f"\n(peer: {r['peer']})")
                        for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(ratios + [1.0]) * 1.6)
    ax.set_xlabel("dingo's server CPU per request / the peer's (1.0 = the same; lower is better)")
    ax.set_title(f"CPU per request, dingo against nginx (median of {part['rounds']} rounds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, part)
    _save(fig, path)


def fanout_p99(part, path):
    rows = sorted(part["rows"], key=lambda r: r["rate"])
    offered = [r["rate"] * r["subscribers"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(offered, [r["dingo"]["p99_ms"] for r in rows], "o-", color=DINGO, label="dingo p99 (2 workers)")
    ax.plot(offered, [r["node"]["p99_ms"] for r in rows], "s-", color=PEER, label="Node.js + ws p99 (1 process)")
    ax.plot(offered, [r["dingo"]["p50_ms"] for r in rows], "o:", color=DINGO, alpha=0.6, label="dingo p50")
    ax.plot(offered, [r["node"]["p50_ms"] for r in rows], "s:", color=PEER, alpha=0.6, label="Node.js p50")
    for r, x in zip(rows, offered):
        for side, colour in (("dingo", DINGO), ("node", PEER)):
            if r[side]["missed"]:
                ax.annotate(f"{r[side]['missed']:,} of {r[side]['expected']:,}\nmissed (all rounds)",
                            (x, r[side]["p99_ms"]), textcoords="offset points", xytext=(-10, -28),
                            ha="right", fontsize=7, color=colour)
    ax.set_xlabel(f"offered deliveries/s (publishes/s × {rows[0]['subscribers']:,} subscribers, 100-byte messages)")
    ax.set_ylabel("publish-to-delivery latency, ms")
    ax.set_title("Fan-out: p99 latency against offered rate")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, part)
    _save(fig, path)


def idle_memory(part, path):
    rows = part["rows"]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(rows))
    bars = ax.bar(list(x), [r["kb_per_conn"] for r in rows], 0.5, color=DINGO, label="dingo workers' RSS delta")
    for i, r in enumerate(rows):
        ax.hlines(r["target"], i - 0.35, i + 0.35, colors="#d62728", linestyles="--",
                  label="target" if i == 0 else None)
    for b, r in zip(bars, rows):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{r['kb_per_conn']:.2f} KB",
                ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{r['kind']}\n{r['connected']:,} connections" for r in rows])
    ax.set_ylabel("KB per idle WebSocket")
    ax.set_title("Memory per idle WebSocket connection")
    ax.set_ylim(0, max(max(r["kb_per_conn"], r["target"]) for r in rows) * 1.25)
    ax.legend(loc="upper left")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, part)
    _save(fig, path)


def storm_arrivals(part, path):
    series = part["series"]
    outages = sorted({r["down_s"] for r in series["runs"]})
    policies = list(dict.fromkeys(r["policy"] for r in series["runs"]))
    fig, axes = plt.subplots(len(outages), 1, figsize=(8, 2.6 * len(outages) + 0.6), squeeze=False)
    per_s = 1000 / series["bucket_ms"]
    for ax, down in zip(axes[:, 0], outages):
        runs = {r["policy"]: r for r in series["runs"] if r["down_s"] == down}
        end_s = 0
        for policy, colour in zip(policies, POLICY_COLOURS):
            a = runs[policy]["attempts_100ms"]
            t = [i * series["bucket_ms"] / 1000 for i in range(len(a))]
            ax.plot(t, [n * per_s for n in a], color=colour, lw=1, label=policy)
            end_s = max(end_s, len(a) * series["bucket_ms"] / 1000)
        ax.axvspan(0, down, color="#999999", alpha=0.2, label="gateway down")
        ax.axhline(series["capacity"], color="#555555", ls="--", lw=0.8, label="gateway capacity")
        ax.set_xlim(0, min(end_s, 60))
        ax.set_yscale("log")  # gRPC's synchronized bursts are 50x the others' peaks
        ax.set_ylim(bottom=50)
        ax.set_ylabel("attempts/s (log)")
        ax.set_title(f"down {down:g} s", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds after the restart (attempts per 100 ms bucket, ×10; first 60 s)")
    fig.suptitle(f"Reconnect storm: {series['clients']:,} clients, connection attempts arriving at the gateway "
                 f"(simulated, capacity {series['capacity']:,}/s)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footer(fig, part)
    _save(fig, path)


# results.json key -> (chart function, file name)
CHARTS = {
    "cpu_per_request": (cpu_per_request, "cpu-per-request.png"),
    "fanout": (fanout_p99, "fanout-p99.png"),
    "idle": (idle_memory, "idle-memory.png"),
    "storm": (storm_arrivals, "storm-arrivals.png"),
}
