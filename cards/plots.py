"""The card's pictures: utterance durations per split, and the filter funnel (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

from shqip_av.files import atomic_output


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def duration_histogram(durations: dict[str, list[float]], path: Path) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    values = [d for ds in durations.values() for d in ds]
    bins = [0.5 * i for i in range(0, int(max(values + [1.0]) / 0.5) + 2)]
    for split, ds in durations.items():
        if ds:
            ax.hist(ds, bins=bins, alpha=0.6, label=f"{split} ({len(ds)})")
    ax.set_xlabel("utterance duration (s)")
    ax.set_ylabel("utterances")
    ax.set_title("Utterance durations per split")
    ax.legend()
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def funnel_chart(stages: list[tuple[str, int]], path: Path) -> Path:
    """Horizontal bars: how many candidates remain after each step, top to bottom."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(stages) + 1.0), dpi=100)
    labels = [s for s, _ in stages][::-1]
    counts = [n for _, n in stages][::-1]
    bars = ax.barh(labels, counts, color="#4c72b0")
    for bar, n in zip(bars, counts):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {n}", va="center")
    ax.set_xlabel("count")
    ax.set_title("What survives each step")
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
