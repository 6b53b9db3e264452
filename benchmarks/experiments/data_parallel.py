"""Data parallelism over per-core host devices on CPU: does splitting the batch over N single-threaded
CPU "devices" (``--xla_force_host_platform_device_count=N``, ``--xla_cpu_multi_thread_eigen=false``)
train faster than one device using every core inside each op?

  python -m benchmarks.experiments.data_parallel --model simple_cnn --batch-size 128

Each configuration runs in a fresh subprocess, since XLA_FLAGS are read once per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CONFIGS = {
    "1 device, all cores per op": "",
    "N devices, 1 thread per op": "--xla_force_host_platform_device_count={n} --xla_cpu_multi_thread_eigen=false",
    "N devices, all cores per op": "--xla_force_host_platform_device_count={n}",
}


def _measure(model: str, batch_size: int, repeats: int) -> dict:
    import jax

    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from benchmarks.timing import time_function
    from jaxvision.parallel import make_data_parallel_step, make_mesh, place_state, shard_batch

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32")
    mesh = make_mesh()
    step = make_data_parallel_step(mesh, state)
    carry = [place_state(state, mesh)]
    batch = shard_batch(jax.device_get(batch), mesh)

    def one_step():
        carry[0], metrics = step(carry[0], batch, key)
        return metrics

    timing = time_function(one_step, repeats=repeats)
    return {"devices": jax.device_count(), "train_images_per_s": batch_size / timing.median, "step_s": timing.median}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.data_parallel", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="simple_cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--devices", type=int, default=os.cpu_count())
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.model, args.batch_size, args.repeats)))
        return []
    rows = []
    base = os.environ.get("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    for name, flags in CONFIGS.items():
        env = dict(os.environ, XLA_FLAGS=f"{base} {flags.format(n=args.devices)}".strip())
        out = subprocess.run([sys.executable, "-m", "benchmarks.experiments.data_parallel", "--child", "--model", args.model,
                              "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True)
        row = {"config": name, "xla_flags": env["XLA_FLAGS"], **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{name:32s} {row['devices']} device(s): {row['train_images_per_s']:8,.0f} img/s  ({row['xla_flags']})",
              flush=True)
    print(f"load average: {os.getloadavg()}")
    return rows


if __name__ == "__main__":
    main()
