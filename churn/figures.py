"""Figures embedded in the HTML reports (drift, live evaluation): one PNG, inlined."""

from __future__ import annotations

import base64
import io
from typing import Any


def png_base64(fig: Any) -> str:
    """A matplotlib figure as base64 PNG for an <img src="data:image/png;base64,...">, closed
    after (reports draw many; an open figure keeps its memory)."""
    from matplotlib import pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
