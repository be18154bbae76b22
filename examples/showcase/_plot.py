"""The one plotting helper of the showcase: matplotlib is imported here, lazily.

Every experiment computes its numbers without matplotlib; only its ``plot``
function calls :func:`new_figure` and :func:`save`.  Figures are built with
``matplotlib.figure.Figure`` directly (no pyplot), so no GUI backend and no
global state is involved, and the PNGs are written without timestamps or
version stamps so that regenerating them gives stable files.
"""
from __future__ import annotations

from pathlib import Path

# One colour per loss, used by every figure so a loss looks the same everywhere.
COLOURS = {
    "mse": "#d62728",
    "cross_entropy": "#1f77b4",
    "cross_entropy_variant": "#17becf",
    "hinge": "#2ca02c",
    "squared_hinge": "#98df8a",
    "zero_one": "#444444",
    "weston_watkins": "#2ca02c",
    "crammer_singer": "#9467bd",
    "gaussian_nll": "#ff7f0e",
}


def require_matplotlib():
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError("the showcase figures need matplotlib: "
                          "pip install 'fastloss[showcase]'") from exc


def new_figure(n_columns=1, width=5.5, height=4.0):
    """A figure with ``n_columns`` axes side by side: (figure, list of axes)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_columns, height), layout="constrained")
    axes = fig.subplots(1, n_columns, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def save(fig, out_dir, name):
    """Write ``fig`` to ``out_dir/name.png`` and return the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    # No "Software" stamp: the file does not change with the matplotlib version.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path
