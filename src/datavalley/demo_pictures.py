"""The demo's pictures (matplotlib, the ``demo`` extra): the contract's ε budget draining query by query,
and where the consumer's money went. Each function returns the PNG's path, or None without matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def budget_picture(trace: list[dict[str, Any]], out: Path) -> Path | None:
    """A step chart of ε left after each query; cached answers cost nothing; refusals are marked."""
    plt = _pyplot()
    if plt is None or not trace:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    start = next((t["left"] + t["charged"] for t in trace if t["left"] is not None), 0.0)
    xs, ys, left = [0], [start], start
    for i, t in enumerate(trace, 1):
        left = t["left"] if t["left"] is not None else left
        xs.append(i)
        ys.append(left)
    ax.step(xs, ys, where="post", color="#1f6feb", linewidth=2.5)
    ax.fill_between(xs, ys, step="post", alpha=0.15, color="#1f6feb")
    for i, t in enumerate(trace, 1):
        if t["refused"]:
            ax.annotate(
                "refused:\nbudget spent",
                (i, 0),
                xytext=(i - 0.35, start * 0.35),
                color="#cf222e",
                arrowprops={"arrowstyle": "->", "color": "#cf222e"},
                fontsize=9,
            )
        elif t["cached"]:
            ax.annotate(
                "repeat:\nfree (cached)",
                (i, ys[i]),
                xytext=(i - 0.3, ys[i] + start * 0.12),
                fontsize=9,
                color="#1a7f37",
            )
        else:
            ax.annotate(f"-{t['charged']:g}", (i, ys[i]), xytext=(i + 0.05, ys[i] + start * 0.03), fontsize=9)
    ax.set_xticks(range(1, len(trace) + 1), [f"Q{i}" for i in range(1, len(trace) + 1)])
    ax.set_ylim(0, start * 1.25 if start else 1)
    ax.set_ylabel("privacy budget left (ε)")
    ax.set_title("The contract's privacy budget drains with every answered query")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def settlement_picture(statement: dict[str, Any], out: Path) -> Path | None:
    """Where the prepayment went: released to the provider (net), the exchange fee, still in escrow."""
    plt = _pyplot()
    if plt is None or not statement:
        return None
    funded = int(statement.get("funded", 0))
    parts = [
        ("provider (net)", int(statement.get("provider_net", 0)), "#1a7f37"),
        ("exchange fee", int(statement.get("fees", 0)), "#9a6700"),
        ("still in escrow", int(statement.get("escrow", 0)), "#1f6feb"),
    ]
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=120)
    ax.barh(["prepaid"], [funded / 100], color="#8c959f")
    left = 0.0
    for label, fen, color in parts:
        ax.barh(["settled"], [fen / 100], left=left, color=color, label=f"{label}: {fen / 100:,.2f} CNY")
        if fen > funded * 0.06:
            ax.text(
                left + fen / 200, 1, f"{fen / 100:,.0f}", ha="center", va="center", color="white", fontsize=9
            )
        left += fen / 100
    ax.set_xlabel("CNY")
    ax.set_title(f"Settlement of the contract: {funded / 100:,.2f} CNY prepaid into escrow")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.62), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
