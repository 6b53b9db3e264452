"""One-off experiments behind the figures in benchmarks/NOTES.md, each ``python -m benchmarks.experiments.<name>``.

Unlike the harness (``python -m benchmarks.run``), each answers one question about one choice (an XLA
option, a malloc setting, a layer's kernel) by timing the alternatives side by side in one process,
or one process each where the setting is per process. They print; they write nothing unless asked.
"""

from __future__ import annotations


def parse_rows(text: str) -> list[tuple[str, int]]:
    """``"lenet5:512,mlp:4"`` -> ``[("lenet5", 512), ("mlp", 4)]``.

    Raises:
      ValueError: for an item that is not ``model:batch``.
    """
    rows = []
    for item in text.split(","):
        model, _, batch = item.partition(":")
        if not batch.isdigit():
            raise ValueError(f"Invalid row {item!r}: expected model:batch, e.g. lenet5:512.")
        rows.append((model, int(batch)))
    return rows
