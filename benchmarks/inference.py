"""``python -m benchmarks.inference``: ResNet-50 inference images/s, jaxvision against PyTorch eager, same weights.

One set of weights for both: a PyTorch twin of torchvision's ResNet-50 (``benchmarks.torchvision_twins``)
with random weights and batch-norm statistics, its ``state_dict()`` loaded into jaxvision with
``jaxvision.pretrained.load_torchvision``, so both frameworks run the network a torchvision ``.pth``
file would give. Timed: jaxvision's jitted eval-mode forward (``kernels`` "auto" and "reference",
compile options as ``jaxvision.backends.compile`` picks them), and the twin in ``eval()`` under
``torch.no_grad()``; the same batch of 224x224 images; warm-up calls, every call synced
(``block_until_ready``), the median with min and max (``benchmarks.timing``). The ratio is jaxvision
images/s over PyTorch's. The outputs are checked to agree before anything is timed.

    python -m benchmarks.inference                        # batch 32, 5 repeats
    python -m benchmarks.inference --repeats 3 --kernels auto

The process is set up as ``benchmarks.run`` sets itself up on CPU (XLA flags, the restart with huge
pages, PyTorch with as many intra-op threads as there are cores). Results go to ``--output``
(default ``runs/benchmarks/``, outside the source tree).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

KERNELS = ("auto", "reference", "cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", help="a torchvision model jaxvision loads (default resnet50)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row, at least (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="time each row for at least this long, beyond --repeats (default 0: exactly --repeats)")
    p.add_argument("--kernels", default="auto,reference", help="comma-separated jaxvision layers (default auto,reference)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="where the JSON goes (default runs/benchmarks/)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.kernels = args.kernels.split(",")
    from jaxvision.pretrained import SUPPORTED_MODELS

    if args.model not in SUPPORTED_MODELS:
        p.error(f"Unknown --model {args.model}: expected one of {', '.join(SUPPORTED_MODELS)}.")
    bad = [k for k in args.kernels if k not in KERNELS]
    if bad:
        p.error(f"Unknown --kernels {', '.join(bad)}: expected some of {', '.join(KERNELS)}, e.g. auto,reference.")
    if min(args.batch_size, args.repeats) < 1 or args.warmup < 0 or args.min_seconds < 0 or args.image_size < 63:
        p.error(f"Invalid --batch-size {args.batch_size} / --repeats {args.repeats} / --warmup {args.warmup} / "
                f"--min-seconds {args.min_seconds} / --image-size {args.image_size}: expected >= 1, >= 1, >= 0, >= 0, >= 63.")
    return args


def _timing_row(framework: str, mode: str, timing, batch_size: int, **extra) -> dict:
    return {"framework": framework, "mode": mode, "batch_size": batch_size, "step_s": dataclasses.asdict(timing),
            "images_per_s": batch_size / timing.median, **extra}


def measure(args: argparse.Namespace) -> dict:
    """Times every row; returns the record (machine, args, rows)."""
    import jax
    import numpy as np
    import torch

    from benchmarks import torchvision_twins as twins
    from benchmarks.timing import machine_info, time_compile, time_function, timed_calls, Timing
    from jaxvision.backends import resolve_kernels
    from jaxvision.backends.compile import compiler_options
    from jaxvision.models import get_model
    from jaxvision.pretrained import load_torchvision

    started = time.perf_counter()
    machine = machine_info()
    twin = twins.random_twin(args.model, seed=args.seed)
    variables = jax.device_put(load_torchvision(args.model, twins.state_dict_numpy(twin)))
    pixels = np.random.default_rng(args.seed).normal(size=(args.batch_size, args.image_size, args.image_size, 3))
    pixels = pixels.astype(np.float32)
    images = jax.device_put(pixels)
    torch_images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))

    def torch_forward():
        with torch.no_grad():
            return twin(torch_images)

    reference = torch_forward().numpy()
    rows = []
    for choice in args.kernels:
        model = get_model(args.model, num_classes=1000, kernels=choice)
        options = compiler_options(model, has_batch_norm="batch_stats" in variables)
        forward = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options or None)
        compiled, compile_s, flops = time_compile(forward, variables, images)
        difference = float(np.abs(np.asarray(compiled(variables, images)) - reference).max() / np.abs(reference).max())
        if difference > 1e-4:  # timing a network that computes something else would be meaningless
            raise RuntimeError(f"jaxvision ({choice}) and PyTorch disagree: max relative logit difference {difference:.1e}")
        timing = time_function(lambda: compiled(variables, images), repeats=args.repeats, warmup=args.warmup,
                               min_seconds=args.min_seconds)
        rows.append(_timing_row("jaxvision", "jit", timing, args.batch_size, kernels=resolve_kernels(choice),
                                requested_kernels=choice, compiler_options=options, compile_s=compile_s,
                                flops_per_call=flops, max_relative_difference=difference))
        print(f"jaxvision {choice} ({resolve_kernels(choice)}): {rows[-1]['images_per_s']:.1f} images/s", flush=True)
        jax.clear_caches()
    for _ in range(args.warmup):
        torch_forward()
    timing = Timing.of(timed_calls(torch_forward, repeats=args.repeats, min_seconds=args.min_seconds))
    rows.append(_timing_row("pytorch", "eager", timing, args.batch_size, torch_threads=torch.get_num_threads()))
    print(f"pytorch eager: {rows[-1]['images_per_s']:.1f} images/s", flush=True)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"benchmark": "inference", "model": args.model, "image_size": args.image_size, "machine": machine,
            "args": vars(args), "rows": rows, "wall_seconds": time.perf_counter() - started}


def table(rows: list[dict]) -> str:
    torch_rate = next(r["images_per_s"] for r in rows if r["framework"] == "pytorch")
    lines = ["| framework | layers | batch | images/s | ms per batch: median (min-max) | compile s | vs PyTorch eager |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        step = r["step_s"]
        layers = r.get("kernels", f"eager, {r.get('torch_threads')} threads")
        compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
        lines.append(f"| {r['framework']} | {layers} | {r['batch_size']} | {r['images_per_s']:.1f} | "
                     f"{step['median'] * 1e3:.0f} ({step['min'] * 1e3:.0f}-{step['max'] * 1e3:.0f}) | {compile_s} | "
                     f"{r['images_per_s'] / torch_rate:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from benchmarks.run import side_by_side_environment

    if not side_by_side_environment(argv):
        raise SystemExit("benchmarks.inference compares against PyTorch: pip install -e '.[compare]'.")
    record = measure(args)
    machine = record["machine"]
    print(f"\n## {args.model} inference, {args.image_size}x{args.image_size}, batch {args.batch_size}, float32: "
          f"{machine['device_kind']} ({machine['backend']}), jax {machine['versions']['jax']}, torch "
          f"{machine['versions']['torch']}, commit {machine['git_commit']}, load {machine['loadavg_start']} -> "
          f"{machine['loadavg_end']}\n")
    print(table(record["rows"]))
    if not args.no_write:
        from benchmarks import report

        machine_stem = f"{time.strftime('%Y-%m-%d')}-{machine['backend']}-{machine['git_commit']}-inference-{args.model}"
        path = report.write_json(record, report.unused_path(args.output or report.RESULTS_DIR, machine_stem))
        print(f"\nwrote {path}")
    return record


if __name__ == "__main__":
    main()
