"""`soak.png`: the daemon's memory, descriptors and CPU, `/api/state` latency, stream lag
and turns over the run, with the burst, the faults and the restart marked.

matplotlib comes from the `bench` extra (`./dev soak` installs it). It is imported by name
when the plot is drawn, so the suite's type check does not need that extra.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

from bench.soak_report import wake_samples
from bench.soak_run import Collected

BUCKET = 10.0
"""Seconds per bar of the turns panel."""
FAULT_COLOURS = {
    "kill_harness": "tab:red",
    "kill_claude": "tab:orange",
    "stop_start": "tab:purple",
    "restart": "black",
}


def _marks(ax: Any, c: Collected, t0: float) -> None:
    for name in ("burst", "load_end"):
        if name in c.phases:
            ax.axvline(c.phases[name] - t0, color="tab:green", linestyle=":", linewidth=1)
    for f in c.faults:
        ax.axvline(f.at - t0, color=FAULT_COLOURS[f.kind], alpha=0.5, linewidth=1)


def plot(c: Collected, path: Path) -> None:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    t0 = c.phases.get("load", c.phases["start"])
    s = c.series
    fig, axes = plt.subplots(7, 1, figsize=(12, 18), sharex=True)
    panels: list[tuple[str, list[tuple[float, float]]]] = [
        ("daemon RSS (MiB)", s.rss_mb), ("daemon open fds", s.fds),
        ("daemon CPU (% of a core)", s.cpu_pct),
    ]  # fmt: skip
    for ax, (title, series) in zip(axes[:3], panels, strict=True):
        ax.plot([t - t0 for t, _ in series], [v for _, v in series], linewidth=1)
        ax.set_ylabel(title)
    if s.harness_rss_mb:
        twin = axes[0].twinx()
        twin.plot([h[0] - t0 for h in s.harness_rss_mb], [h[1] for h in s.harness_rss_mb],
                  color="tab:gray", linewidth=1, label="harness RSS median")  # fmt: skip
        twin.set_ylabel("harness RSS median (MiB)", color="tab:gray")
    for i, client in enumerate(c.watch.clients):
        axes[3].scatter([t - t0 for t, _ in client.states], [v * 1e3 for _, v in client.states],
                        s=4, label=f"client {i}")  # fmt: skip
        axes[4].scatter([t - t0 for t, _ in client.lags], [v * 1e3 for _, v in client.lags],
                        s=2, label=f"client {i}")  # fmt: skip
    axes[3].set_ylabel("/api/state (ms)")
    axes[4].set_ylabel("stream lag (ms)")
    for ax in axes[3:5]:
        ax.set_yscale("log")
        if c.watch.clients:
            ax.legend(loc="upper right", fontsize=7, markerscale=3)
    sent_at = {m.id: m.sent_at for m in c.stored}
    wake = [(sent_at[i] - t0, v) for i, v in wake_samples(c).items() if i in sent_at]
    axes[5].scatter([t for t, _ in wake], [v for _, v in wake], s=4)
    axes[5].set_ylabel("send → turn start (s)")
    started = Counter(int((float(r["started_at"]) - t0) // BUCKET) for r in c.stats)
    failed = Counter(
        int((float(r["started_at"]) - t0) // BUCKET)
        for r in c.stats
        if r["result_kind"] != "success"
    )
    buckets = sorted(started)
    axes[6].bar([b * BUCKET for b in buckets], [started[b] for b in buckets], width=BUCKET * 0.9,
                align="edge", label="turns started")  # fmt: skip
    axes[6].bar([b * BUCKET for b in buckets], [failed[b] for b in buckets], width=BUCKET * 0.9,
                align="edge", color="tab:red", label="of them failed")  # fmt: skip
    axes[6].set_ylabel(f"turns per {BUCKET:g} s")
    axes[6].legend(loc="upper right", fontsize=7)
    axes[6].set_xlabel(
        "seconds since the load began (green: burst, load end; red: harness kill; "
        "orange: claude kill; purple: stop/start; black: restart)"
    )
    for ax in axes:
        _marks(ax, c, t0)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"soak: {c.cfg.agents} agents, {c.cfg.minutes:g} minutes, seed {c.cfg.seed}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
