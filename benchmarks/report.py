"""Results out: the JSON record (under runs/benchmarks/ unless told otherwise), the Markdown tables, the PNG plot.

Records go outside the source tree by default (``runs/`` is git-ignored). A headline record is
committed only on purpose: run with ``--output benchmarks/results`` (``HEADLINE_DIR``) and ``git add`` it.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

# Relative to the working directory, as ``jaxvision train`` writes its runs.
RESULTS_DIR = os.path.join("runs", "benchmarks")
# The committed headline records (benchmarks/README.md's table comes from one of them).
HEADLINE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def unused_path(directory: str, stem: str, suffix: str = ".json") -> str:
    """``<directory>/<stem><suffix>``, or ``<stem>-2<suffix>``, ``-3``, ... if taken; creates ``directory``."""
    os.makedirs(directory, exist_ok=True)
    path, index = os.path.join(directory, stem + suffix), 1
    while os.path.exists(path):
        index += 1
        path = os.path.join(directory, f"{stem}-{index}{suffix}")
    return path


def write_json(record: dict[str, Any], path: str) -> str:
    with open(path, "w") as f:
        json.dump(record, f, indent=1, default=str)
    return path


def write_record(record: dict[str, Any], directory: str = RESULTS_DIR) -> str:
    """Writes ``record`` to ``<directory>/<date>-<backend>-<commit>.json`` (never overwriting); returns the path."""
    machine = record["machine"]
    stem = f"{datetime.date.today().isoformat()}-{machine['backend']}-{machine['git_commit']}"
    return write_json(record, unused_path(directory, stem))


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """One line per (model, batch, dtype): jaxvision train/infer images/s, step time, MFU, compile time,
    and PyTorch eager/compiled train images/s with the ratio jaxvision / PyTorch."""
    jax_rows = [r for r in rows if r["framework"] == "jaxvision"]
    torch_rows = {(r["model"], r["batch_size"], r["mode"]): r for r in rows if r["framework"] == "pytorch"}
    lines = [
        "| model | batch | dtype | images | jax train img/s | step ms (min-max) | jax infer img/s | GFLOP/step | MFU | "
        "compile s (train/eval) | torch eager img/s | ratio | torch.compile img/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in jax_rows:
        step = r["train_step_s"]
        cells = [
            r["model"] + ("" if r["mode"] == "jit" else f" ({r['mode']})"), str(r["batch_size"]), r["dtype"],
            r.get("images", "synthetic"), _fmt(r["train_images_per_s"]),
            f"{step['median'] * 1e3:.1f} ({step['min'] * 1e3:.1f}-{step['max'] * 1e3:.1f})",
            _fmt(r["eval_images_per_s"]),
            _fmt(r["train_flops_per_step"] / 1e9 if r.get("train_flops_per_step") else None, 2),
            "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%",
            f"{r['train_compile_s']:.1f}/{r['eval_compile_s']:.1f}",
        ]
        for mode in ("eager", "compile"):
            twin = torch_rows.get((r["model"], r["batch_size"], mode))
            if twin is None or r["dtype"] != "float32":
                cells += ["-", "-"]
            else:
                cells += [_fmt(twin["train_images_per_s"]), f"{r['train_images_per_s'] / twin['train_images_per_s']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pipeline_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | augment | pipeline img/s | train step consumes img/s | margin |", "|---|---|---|---|---|"]
    for r in rows:
        margin = r["images_per_s"] / r["consumer_images_per_s"] if r.get("consumer_images_per_s") else None
        lines.append(f"| {r['dataset']} | {r['augment']} | {_fmt(r['images_per_s'])} | "
                     f"{_fmt(r.get('consumer_images_per_s'))} | {'-' if margin is None else f'{margin:.1f}x'} |")
    return "\n".join(lines)


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| framework | model | recipe | seed | test accuracy | seconds (compile incl.) | compile s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['framework']} | {r['model']} | {r['recipe']} | {r['seed']} | {100 * r['test_accuracy']:.2f}% "
                     f"| {r['seconds']:.1f} | {_fmt(r.get('compile_s'), 1)} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> str:
    """Bar chart of training images/s per model (log scale): jaxvision vs PyTorch eager/compiled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, float]] = {}
    for r in rows:
        label = f"{r['framework']} {r['mode']}" + ("" if r["dtype"] == "float32" else f" {r['dtype']}")
        series.setdefault(label, {})[f"{r['model']}\nb{r['batch_size']}"] = r["train_images_per_s"]
    # In the run's own order (models as listed, batch sizes ascending), not sorted as strings.
    names = list(dict.fromkeys(f"{r['model']}\nb{r['batch_size']}" for r in rows))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
    for index, (label, values) in enumerate(series.items()):
        xs = [i + index * width for i in range(len(names))]
        ax.bar(xs, [values.get(n, 0) for n in names], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("training images / s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
