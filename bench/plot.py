"""The plot of latency against offered load for both systems (matplotlib, Agg backend)."""

import math
from pathlib import Path
from typing import Any

from bench.targets import Rounds, figure


def plot(document: dict[str, Any], path: Path) -> bool:
    """Latency (p50, p99) against offered load for both systems, as a PNG; False if there is
    nothing to plot."""
    import matplotlib  # noqa: PLC0415 (only the report needs it; it is slow to import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rounds: Rounds = document.get("rounds", [])
    rates = [float(rate) for rate in document["sizes"]["rates"]]
    if not rounds or not rates:
        return False
    figure_, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = {"asyncgate": "tab:blue", "celery": "tab:orange"}
    labels = {"asyncgate": "asyncgate (subscription)", "celery": "Celery + Redis (result feed)"}
    for system, colour in styles.items():
        for quantile, dash in (("p50", "-"), ("p99", "--")):
            values = [figure(rounds, f"{system}.open_{rate:g}.{quantile}_ms") for rate in rates]
            if all(math.isnan(value) for value in values):
                continue
            axes.plot(
                rates, values, dash, marker="o", color=colour, label=f"{labels[system]} {quantile}"
            )
    axes.set_xlabel("offered load (operations/s)")
    axes.set_ylabel("submit → final state (ms)")
    axes.set_yscale("log")
    axes.set_xticks(rates)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(f"Latency against offered load (median of {len(rounds)} rounds)")
    figure_.tight_layout()
    figure_.savefig(path)
    plt.close(figure_)
    return True
