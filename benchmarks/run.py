"""``python -m benchmarks.run``: throughput, MFU, PyTorch side by side, input pipeline, time to accuracy.

  python -m benchmarks.run --quick                  # < 10 minutes on a 2-core CPU
  python -m benchmarks.run                          # every default model, batch 32/128/512
  python -m benchmarks.run --quick --kernels reference   # flax's own layers, as GPUs and TPUs run them
  python -m benchmarks.run --models resnet50 --batch-sizes 256 --dtypes bfloat16 --backend gpu

Writes runs/benchmarks/<date>-<backend>-<commit>.json (``--output``) and a PNG beside it, prints
Markdown tables. Without TensorFlow it runs on synthetic inputs and skips the pipeline and MNIST rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# On XLA:CPU the default YNNPACK convolution fusions run single-threaded and several times slower
# than XLA's own convolutions (benchmarks/NOTES.md, items 1-2); an empty list turns them off.
NO_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
KERNELS = ("auto", "reference", "cpu")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="batch 128 only, 5 repeats, PyTorch eager only, one time-to-accuracy recipe and seed")
    p.add_argument("--backend", choices=("cpu", "gpu", "tpu"), help="JAX platform (default: JAX's choice)")
    p.add_argument("--models", help="comma-separated, e.g. lenet5,resnet20 (default: all; ImageNet ones not on CPU)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 32,128,512; quick: 128)")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per row (default 10; quick: 5)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.5,
                   help="time each row's steps for at least this long, beyond --repeats (at most 400 steps), so that "
                        "millisecond steps get a stable median; both frameworks alike (0: exactly --repeats)")
    p.add_argument("--kernels", choices=KERNELS, default="auto",
                   help="the layers jaxvision.get_model builds the models with (jaxvision.backends): 'auto' (default) "
                        "the XLA:CPU kernels on the CPU backend and flax's own layers elsewhere; 'reference' flax's "
                        "layers everywhere (what GPUs and TPUs run); 'cpu' the XLA:CPU kernels everywhere")
    p.add_argument("--images", choices=("auto", "mnist", "synthetic"), default="auto",
                   help="what the throughput rows train on: 'auto' takes real MNIST images for 28x28x1 models when "
                        "TensorFlow and the prepared dataset are at hand (PyTorch runs up to 2x faster on them than on "
                        "noise; NOTES.md, 'Inputs') and standard-normal noise otherwise")
    p.add_argument("--xla-cpu", choices=("auto", "no-ynn", "default"), default="auto",
                   help=f"'no-ynn' adds {NO_YNN_FLAG} on CPU; 'default' leaves XLA as is; 'auto' (default): 'no-ynn' "
                        "unless --kernels reference, as `jaxvision train` does")
    p.add_argument("--malloc", choices=("auto", "huge-pages", "default"), default="auto",
                   help="'huge-pages': from the command line, on CPU, restart with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
                        "(jaxvision/backends/cpu/host_memory.py), so XLA's per-step buffers fault in 2 MiB at a time, "
                        "not 4 KiB (NOTES.md, item 11); PyTorch in this process runs with it too. 'default': glibc's "
                        "defaults. 'auto' (default): 'huge-pages' unless --kernels reference, as `jaxvision train` does")
    p.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads (default: the CPU cores)")
    p.add_argument("--omp-wait-policy", choices=("default", "PASSIVE", "ACTIVE"), default="default",
                   help="OMP_WAIT_POLICY for PyTorch's OpenMP threads; PASSIVE is fairer on a shared, busy machine, "
                        "where spinning threads wait on descheduled ones (NOTES.md, 'PyTorch on a busy machine')")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--no-torch-compile", action="store_true", help="PyTorch eager only")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument("--no-time-to-accuracy", action="store_true")
    p.add_argument("--target", type=float, default=0.99, help="time-to-accuracy target on the MNIST test set")
    p.add_argument("--seeds", default=None, help="time-to-accuracy seeds (default 0,1; quick: 0)")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data dir holding mnist/ (default: $TFDS_DATA_DIR, else ../shared/tensorflow_datasets)")
    p.add_argument("--mnist-npz", default=None,
                   help="time to accuracy on MNIST from this archive (python -m benchmarks.time_to_accuracy "
                        "--export-npz) instead of tensorflow-datasets")
    p.add_argument("--output", "--output-dir", dest="output", default=None,
                   help=f"where the JSON and PNG go (default {os.path.join('runs', 'benchmarks')}, outside the source "
                        "tree; a headline record is committed on purpose with --output benchmarks/results)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("128" if args.quick else "32,128,512")).split(",")]
    args.repeats = args.repeats or (5 if args.quick else 10)
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",")]
    args.dtypes = args.dtypes.split(",")
    args.models = args.models.split(",") if args.models else None
    # The process tweaks follow the kernels, as in `jaxvision train`: the reference layers get none.
    if args.xla_cpu == "auto":
        args.xla_cpu = "default" if args.kernels == "reference" else "no-ynn"
    if args.malloc == "auto":
        args.malloc = "default" if args.kernels == "reference" else "huge-pages"
    if args.min_seconds < 0:
        p.error(f"Invalid --min-seconds {args.min_seconds}: expected >= 0, e.g. 0.5.")
    if args.repeats < 1 or any(b < 1 for b in args.batch_sizes):
        p.error(f"Invalid --repeats {args.repeats} / --batch-sizes {args.batch_sizes}: expected positive integers.")
    return args


def runs_on_cpu(args: argparse.Namespace) -> bool:
    """Whether JAX will run on the CPU: ``--backend cpu``, or no ``--backend`` and no accelerator for JAX."""
    if args.backend:
        return args.backend == "cpu"
    from jaxvision.backends.process import platform_is_cpu

    return platform_is_cpu()


def _backend_started() -> bool:
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(xla_bridge, "_backends", None))


def configure_environment(args: argparse.Namespace) -> None:
    """Sets JAX_PLATFORMS, XLA_FLAGS and the TFDS data dir; must run before JAX starts its backend."""
    if _backend_started() and (args.backend or args.xla_cpu == "no-ynn"):
        print("warning: JAX's backend started before benchmarks.run configured it; --backend/--xla-cpu may not apply")
    if args.backend:
        os.environ["JAX_PLATFORMS"] = args.backend
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    shared = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "tensorflow_datasets")
    data_dir = args.data_dir or os.environ.get("TFDS_DATA_DIR") or (shared if os.path.isdir(shared) else None)
    if data_dir:
        os.environ["TFDS_DATA_DIR"] = os.path.abspath(data_dir)
    flags = os.environ.get("XLA_FLAGS", "")
    if args.xla_cpu == "no-ynn" and runs_on_cpu(args) and "ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + NO_YNN_FLAG).strip()


def side_by_side_environment(argv: list[str] | None) -> bool:
    """Sets up a script that times both frameworks as this harness sets itself up; whether PyTorch is there.

    XLA flags and the TFDS data dir as ``configure_environment`` sets them; when run as a command
    (``argv`` None) on CPU, the restart with huge pages (benchmarks/NOTES.md, item 11); PyTorch's intra-op
    threads as many as the cores, the number JAX's CPU client uses. Call it before JAX starts its backend.
    """
    args = parse_args([])
    configure_environment(args)
    if argv is None and runs_on_cpu(args):
        from jaxvision.backends.cpu.host_memory import restart_with_huge_pages

        restart_with_huge_pages()  # replaces this process unless the tunable is already set
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[compare]'): jaxvision's figures only.")
        return False
    torch.set_num_threads(os.cpu_count())
    return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    configure_environment(args)
    if argv is None and args.malloc == "huge-pages" and runs_on_cpu(args):
        from jaxvision.backends.cpu.host_memory import restart_with_huge_pages

        restart_with_huge_pages()  # replaces this process unless the tunable is already set
    import jax

    from benchmarks import report
    from benchmarks.inputs import tensorflow_available
    from benchmarks.jax_bench import available_models, bench_jax
    from benchmarks.timing import machine_info, peak_flops
    from jaxvision.backends import resolve_kernels
    from jaxvision.backends.cpu.host_memory import transparent_huge_pages_mode

    started = time.perf_counter()
    backend = jax.default_backend()
    specs = available_models(args.models, backend)
    machine = machine_info()
    machine["kernels"] = resolve_kernels(args.kernels)
    machine["tensorflow"] = tensorflow_available()
    machine["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES")
    machine["transparent_huge_pages"] = transparent_huge_pages_mode()
    peaks = {dtype: peak_flops(dtype) for dtype in args.dtypes}
    for dtype, (peak, source) in peaks.items():
        print(f"peak {dtype}: {peak / 1e9:,.1f} GFLOP/s ({source})")
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch not installed (pip install -e '.[compare]'): no comparison.")
    if torch is not None:
        torch.set_num_threads(args.threads or os.cpu_count())
        machine["torch_threads"] = torch.get_num_threads()
        machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "default")
        print(f"PyTorch intra-op threads: {torch.get_num_threads()} (JAX's CPU client uses all {os.cpu_count()} cores)")

    rows = []
    for spec in specs:
        for batch_size in args.batch_sizes:
            for dtype in args.dtypes:
                row = bench_jax(spec, batch_size, dtype, repeats=args.repeats, warmup=args.warmup, kernels=args.kernels,
                                images=args.images, min_seconds=args.min_seconds)
                flops = row["train_flops_per_step"]
                row["mfu"] = flops / row["train_step_s"]["median"] / peaks[dtype][0] if flops else None
                row["peak_flops"], row["peak_flops_source"] = peaks[dtype]
                rows.append(row)
                print(f"jaxvision {spec.name} b{batch_size} {dtype} ({row['images']} images): "
                      f"{row['train_images_per_s']:,.0f} train img/s, "
                      f"{row['eval_images_per_s']:,.0f} infer img/s", flush=True)
            if torch is not None and backend == "cpu":
                # torch.compile costs minutes per model on 2 cores: only in full runs.
                modes = [False] if args.no_torch_compile or args.quick else [False, True]
                for compiled in modes:
                    try:
                        row = bench_torch_row(spec, batch_size, args, compiled)
                    except Exception as error:  # torch.compile needs a C++ toolchain; report, go on
                        print(f"pytorch {'compile' if compiled else 'eager'} {spec.name}: failed ({error!r:.200})")
                        continue
                    rows.append(row)
                    print(f"pytorch {row['mode']} {spec.name} b{batch_size}: {row['train_images_per_s']:,.0f} train img/s",
                          flush=True)
            jax.clear_caches()

    notes = []
    pipeline_rows, accuracy_rows = [], []
    if not args.no_pipeline:
        if machine["tensorflow"]:
            pipeline_rows = run_pipeline(args)
        else:
            notes.append("pipeline rows skipped: the TFDS input pipeline needs TensorFlow, not installed here")
    if not args.no_time_to_accuracy:
        if args.mnist_npz or machine["tensorflow"]:
            accuracy_rows = run_time_to_accuracy(args, torch is not None)
        else:
            notes.append("time to accuracy skipped: MNIST needs tensorflow-datasets or --mnist-npz")
    for note in notes:
        print(note)
    machine["loadavg_end"] = list(round(x, 2) for x in os.getloadavg())
    record = {"machine": machine, "args": vars(args), "peak_flops": {d: {"flops": p, "source": s} for d, (p, s) in peaks.items()},
              "throughput": rows, "pipeline": pipeline_rows, "time_to_accuracy": accuracy_rows, "notes": notes,
              "wall_seconds": time.perf_counter() - started}
    print(f"\n## {machine['device_kind']} ({machine['backend']}), jax {machine['versions']['jax']}, "
          f"kernels {machine['kernels']}, commit {machine['git_commit']}, XLA_FLAGS='{machine['xla_flags']}', "
          f"load {machine['loadavg_start']} -> {machine['loadavg_end']}\n")
    print(report.throughput_table(rows))
    if pipeline_rows:
        print("\n" + report.pipeline_table(pipeline_rows))
    if accuracy_rows:
        print("\n" + report.accuracy_table(accuracy_rows))
    if not args.no_write:
        path = report.write_record(record, args.output or report.RESULTS_DIR)
        try:
            print(f"\nwrote {path} and {report.plot(rows, path[:-5] + '.png')}")
        except ImportError:  # a bare accelerator host may have no matplotlib
            print(f"\nwrote {path} (no plot: matplotlib is not installed)")
    print(f"total {record['wall_seconds']:.0f} s")
    return record


def bench_torch_row(spec, batch_size: int, args: argparse.Namespace, compiled: bool) -> dict:
    from benchmarks.torch_models import bench_torch

    return bench_torch(spec.name, spec.input_shape, spec.num_classes, batch_size, repeats=args.repeats,
                       warmup=args.warmup, compile=compiled, images=args.images, min_seconds=args.min_seconds)


def run_pipeline(args: argparse.Namespace) -> list[dict]:
    from benchmarks.pipeline_bench import bench_pipeline

    return bench_pipeline(batch_size=128, num_batches=50 if args.quick else 200, repeats=args.repeats,
                          kernels=args.kernels)


def run_time_to_accuracy(args: argparse.Namespace, with_torch: bool) -> list[dict]:
    from benchmarks import time_to_accuracy as tta

    data = tta.load_mnist(args.mnist_npz)
    rows = []
    for recipe in tta.RECIPES[:1] if args.quick else tta.RECIPES:
        for seed in args.seeds:
            rows.append(tta.run_jax(data, recipe, seed=seed, target=args.target, kernels=args.kernels))
            print(f"time to {args.target:.1%}: {rows[-1]}", flush=True)
            if with_torch:
                rows.append(tta.run_torch(data, recipe, seed=seed, target=args.target))
                print(f"time to {args.target:.1%}: {rows[-1]}", flush=True)
    return rows


if __name__ == "__main__":
    main()
