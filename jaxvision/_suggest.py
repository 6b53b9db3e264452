"""Did-you-mean error messages for unknown names (models, datasets, optimisers, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name_error(kind: str, name: str, known: Iterable[str], *, hint: str = "") -> ValueError:
    """Builds the error raised when ``name`` is not one of ``known``.

    Args:
      kind: what the name names, e.g. ``"model"``.
      name: the name that was asked for.
      known: the names that exist.
      hint: an optional sentence saying how to fix it, appended to the message.

    Returns:
      A ValueError such as ``Unknown model 'lenet'. Known: lenet5, mlp. Did you mean 'lenet5'?``
    """
    known = sorted(known)
    message = f"Unknown {kind} {name!r}. Known: {', '.join(known)}."
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    if not close:  # 'lenet' -> 'lenet5': a prefix is a strong hint even when the ratio is low.
        close = [k for k in known if k.startswith(str(name)) or str(name).startswith(k)][:1]
    if close:
        message += f" Did you mean {close[0]!r}?"
    if hint:
        message += f" {hint}"
    return ValueError(message)
