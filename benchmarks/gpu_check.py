"""``python -m benchmarks.gpu_check``: what one short call on a lent GPU checks, written to one JSON file.

    bash benchmarks/gpu_check.sh                  # on the GPU host, from the source tree: under 8 minutes
    JAX_PLATFORMS=cpu python -m benchmarks.gpu_check --dry-run --without-tensorflow   # the plan, here
    python -m benchmarks.gpu_check --prepare      # here, with TensorFlow: what the GPU host should carry

Each step runs in a process of its own (which then has the accelerator to itself), under a time limit:

1. the benchmark rows ResNet-20 float32 and bfloat16 at batch 128 and ResNet-50 bfloat16 at batch 256
   (``benchmarks.run``: compile times, step times, MFU; synthetic inputs, no PyTorch), one process a row;
2. MNIST time to 99% (``benchmarks.time_to_accuracy``, jaxvision, seeds 0, 1, 2) if MNIST is at hand:
   carried as ``runs/gpu_check/mnist.npz`` (``--prepare`` writes it), or found by tensorflow-datasets;
   otherwise skipped with a note;
3. the model and train-step tests (``DEFAULT_TESTS``) without their CPU-kernel cases
   (``-m "not cpu_kernels and not slow"``): off the CPU, ``kernels="auto"`` is ``"reference"``, so this
   is flax's own layers on the GPU. Without TensorFlow, a test module that imports it (or
   ``jaxvision.data``) when imported is left out with a note. They get the time the rows left.

The host needs no TensorFlow, tensorflow-datasets or network: the benchmark modules import TensorFlow
only when they read a dataset. Packages the host lacks that the checks need (pytest and its
dependencies, tqdm) can be carried in ``runs/gpu_check/site`` (``--prepare`` copies them from this
Python); only those the host lacks are put on the path. The JSON is rewritten after every step, so a
killed run still leaves what it finished; each step's output is in ``gpu_check_logs/`` beside it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ROWS = "resnet20:float32:128,resnet20:bfloat16:128,resnet50:bfloat16:256"
DEFAULT_TESTS = "tests/test_models.py,tests/test_zoo_models.py,tests/test_train.py"
DEFAULT_MARKERS = "not cpu_kernels and not slow"
CARRY_DIR = os.path.join("runs", "gpu_check")
MNIST_NPZ = os.path.join(CARRY_DIR, "mnist.npz")
SITE_DIR = os.path.join(CARRY_DIR, "site")
# Top-level modules and files copied into SITE_DIR by --prepare: pytest and what it imports, and tqdm
# (jaxvision.fit imports it); all pure Python.
BUNDLE = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py.py", "pygments", "tqdm")
TENSORFLOW_MODULES = ("tensorflow", "tensorflow_datasets")
# jaxvision.data imports TensorFlow when imported; so does any module that imports it at the top.
TENSORFLOW_IMPORTERS = ("tensorflow", "tensorflow_datasets", "jaxvision.data")
# Upper time limits, seconds; the rows and MNIST first, the tests get what is left of --budget.
ROW_LIMIT_S = {"resnet50": 150}
DEFAULT_ROW_LIMIT_S = 75
TIME_TO_ACCURACY_LIMIT_S = 75
MIN_TEST_S = 60
# A process asked to stop (SIGINT: pytest still writes its report) is killed after this many seconds.
GRACE_S = 20


@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    dtype: str
    batch_size: int

    def __str__(self) -> str:
        return f"{self.model} {self.dtype} batch {self.batch_size}"


def parse_rows(text: str) -> list[Row]:
    """``"resnet20:float32:128,..."`` -> Rows.

    Raises:
      ValueError: for an item that is not ``model:dtype:batch``.
    """
    rows = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3 or not parts[2].isdigit() or parts[1] not in ("float32", "bfloat16"):
            raise ValueError(f"Invalid row {item!r}: expected model:dtype:batch with dtype float32 or bfloat16, "
                             "e.g. resnet20:bfloat16:128.")
        rows.append(Row(parts[0], parts[1], int(parts[2])))
    return rows


def module_importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _top_level_imports(tree: ast.Module) -> list[str]:
    """Modules a file imports when it is imported: its top-level imports, also under a top-level if/try."""
    names, pending = [], list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, (ast.If, ast.Try)):
            pending += node.body + node.orelse + getattr(node, "finalbody", [])
            pending += [inner for handler in getattr(node, "handlers", []) for inner in handler.body]
    return names


def tensorflow_import(path: str, _seen: frozenset[str] = frozenset()) -> str | None:
    """What makes importing the test module at ``path`` import TensorFlow, or None.

    Reads the module (and the helper modules beside it that it imports) without importing it:
    a top-level import of tensorflow, tensorflow_datasets or jaxvision.data.
    """
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    folder = os.path.dirname(path)
    for name in _top_level_imports(tree):
        if any(name == bad or name.startswith(bad + ".") for bad in TENSORFLOW_IMPORTERS):
            return f"imports {name} at module level"
        local = os.path.join(folder, name.split(".")[0] + ".py")
        if os.path.isfile(local) and local not in _seen:
            reason = tensorflow_import(local, _seen | {path})
            if reason:
                return f"via {os.path.basename(local)}: {reason}"
    return None


def plan_tests(files: list[str], tensorflow: bool) -> tuple[list[str], list[dict[str, str]]]:
    """(test files to run, [{"file", "reason"}] of those left out: missing, or needing TensorFlow without it)."""
    kept, excluded = [], []
    for name in files:
        path = os.path.join(ROOT, name)
        reason = None if os.path.isfile(path) else "no such file"
        if reason is None and not tensorflow:
            needs = tensorflow_import(path)
            reason = f"needs TensorFlow, which is not importable here ({needs})" if needs else None
        if reason:
            excluded.append({"file": name, "reason": reason})
        else:
            kept.append(name)
    return kept, excluded


def pytest_command(files: list[str], markers: str, junit_xml: str, *, without_tensorflow: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", "-m", markers, "--junitxml", junit_xml]
    if without_tensorflow:
        command += ["-p", "benchmarks._without_tensorflow"]
    return command + files


def row_command(row: Row, args: argparse.Namespace, output: str) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.run", "--models", row.model, "--dtypes", row.dtype,
               "--batch-sizes", str(row.batch_size), "--kernels", args.kernels, "--images", "synthetic",
               "--repeats", str(args.repeats), "--no-torch", "--no-pipeline", "--no-time-to-accuracy",
               "--output", output]
    return command + (["--backend", args.backend] if args.backend else [])


def time_to_accuracy_command(args: argparse.Namespace, npz: str | None, json_path: str) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.time_to_accuracy", "--recipes", "0", "--seeds", args.seeds,
               "--kernels", args.kernels, "--no-torch", "--json", json_path]
    return command + (["--mnist-npz", npz] if npz else [])


def mnist_source(args: argparse.Namespace, tensorflow: bool) -> tuple[str | None, str]:
    """("npz", "tfds" or None, a note): where time to accuracy reads MNIST, or why it is skipped."""
    npz = os.path.join(ROOT, args.mnist_npz) if not os.path.isabs(args.mnist_npz) else args.mnist_npz
    if os.path.isfile(npz):
        return "npz", f"MNIST from {args.mnist_npz}"
    if tensorflow:
        from benchmarks.inputs import mnist_available

        if mnist_available():
            return "tfds", "MNIST from tensorflow-datasets"
    return None, (f"skipped: no MNIST here ({args.mnist_npz} is not there"
                  + ("" if tensorflow else " and tensorflow-datasets is not importable")
                  + "); write it with `python -m benchmarks.gpu_check --prepare` and carry runs/gpu_check")


def extra_site(site: str, scratch: str) -> tuple[str | None, list[str]]:
    """A folder with links to the modules of ``site`` that this Python cannot import, and their names."""
    if not os.path.isdir(site):
        return None, []
    missing = [entry for entry in sorted(os.listdir(site))
               if not entry.endswith(".dist-info") and not module_importable(entry.removesuffix(".py"))]
    if not missing:
        return None, []
    folder = os.path.join(scratch, "site")
    os.makedirs(folder, exist_ok=True)
    for entry in missing:
        os.symlink(os.path.abspath(os.path.join(site, entry)), os.path.join(folder, entry))
    return folder, missing


def run_step(name: str, command: list[str], *, limit: float, env: dict[str, str], logs: str) -> dict[str, Any]:
    """Runs ``command`` from the repository root for at most ``limit`` seconds, output to ``logs/name.log``.

    Past the limit the process gets SIGINT (pytest then reports what it ran), and SIGKILL ``GRACE_S``
    seconds later.
    """
    os.makedirs(logs, exist_ok=True)
    log_path = os.path.join(logs, f"{name}.log")
    start = time.perf_counter()
    timed_out = False
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=max(limit, 1))
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    with open(log_path, errors="replace") as log:
        tail = log.read()[-3000:]
    seconds = time.perf_counter() - start
    status = "timed out" if timed_out else ("ok" if process.returncode == 0 else f"failed (rc {process.returncode})")
    print(f"  {name}: {status} in {seconds:.0f} s (log {log_path})", flush=True)
    if status != "ok":
        print("    " + "\n    ".join(tail.strip().splitlines()[-15:]), flush=True)
    return {"command": command, "rc": process.returncode, "seconds": round(seconds, 1), "limit_s": round(limit),
            "timed_out": timed_out, "log": log_path, "output_tail": tail}


def junit_summary(path: str) -> dict[str, Any]:
    """Counts and the failing tests of a pytest JUnit XML report (empty if it was not written)."""
    if not os.path.isfile(path):
        return {}
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    problems = []
    for case in suite.iter("testcase"):
        for kind in ("failure", "error"):
            found = case.find(kind)
            if found is not None:
                message = (found.get("message") or "").strip().splitlines()
                problems.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": kind,
                                 "message": message[0][:300] if message else ""})
    return {**counts, "seconds": float(suite.get("time", 0)), "problems": problems}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="print and record what would run; run nothing")
    p.add_argument("--prepare", action="store_true",
                   help=f"write {MNIST_NPZ} (needs tensorflow-datasets and MNIST) and copy pytest and tqdm to "
                        f"{SITE_DIR}, for a host without them; then stop")
    p.add_argument("--output", default=None, help="where the JSON goes (default: $OUT, else runs/benchmarks)")
    p.add_argument("--backend", choices=("cpu", "gpu", "tpu"), default=None,
                   help="JAX platform for every step (default: JAX's choice, the GPU on a GPU host)")
    p.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto",
                   help="the rows' and MNIST run's layers (default auto: flax's own off CPU)")
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:dtype:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per row, at least (default 10)")
    p.add_argument("--tests", default=DEFAULT_TESTS,
                   help=f"test files, comma-separated, or 'none' (default {DEFAULT_TESTS})")
    p.add_argument("--markers", default=DEFAULT_MARKERS, help=f"pytest -m expression (default {DEFAULT_MARKERS!r})")
    p.add_argument("--mnist-npz", default=MNIST_NPZ, help=f"MNIST archive for time to accuracy (default {MNIST_NPZ})")
    p.add_argument("--seeds", default="0,1,2", help="time-to-accuracy seeds (default 0,1,2)")
    p.add_argument("--no-time-to-accuracy", action="store_true")
    p.add_argument("--site", default=SITE_DIR, help=f"carried packages for what the host lacks (default {SITE_DIR})")
    p.add_argument("--budget", type=float, default=450,
                   help="seconds for all steps together (default 450: under 8 minutes with start-up)")
    p.add_argument("--without-tensorflow", action="store_true",
                   help="behave as on a host without TensorFlow (blocks its import here and in every step)")
    args = p.parse_args(argv)
    try:
        args.rows = parse_rows(args.rows)
    except ValueError as error:
        p.error(str(error))
    args.tests = [] if args.tests == "none" else [t for t in args.tests.split(",") if t]
    if args.budget <= 0 or args.repeats < 1:
        p.error(f"Invalid --budget {args.budget} / --repeats {args.repeats}: expected positive numbers, "
                "e.g. 450 and 10.")
    return args


def prepare(args: argparse.Namespace) -> None:
    """Writes MNIST and the pytest/tqdm bundle under runs/gpu_check, for ``run(carry=["runs/gpu_check"])``."""
    from benchmarks.run import configure_environment
    from benchmarks.run import parse_args as run_arguments
    from benchmarks.time_to_accuracy import export_mnist_npz

    configure_environment(run_arguments([]))  # the TFDS data dir as benchmarks.run finds it
    site = os.path.join(ROOT, args.site)
    os.makedirs(site, exist_ok=True)
    for name in BUNDLE:
        spec = importlib.util.find_spec(name.removesuffix(".py"))
        if spec is None or spec.origin is None:
            print(f"  {name}: not installed here, not bundled")
            continue
        source = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
        target = os.path.join(site, os.path.basename(source))
        if os.path.isdir(source):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    npz = os.path.join(ROOT, args.mnist_npz)
    os.makedirs(os.path.dirname(npz), exist_ok=True)
    export_mnist_npz(npz)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(ROOT, CARRY_DIR)) for f in fs)
    print(f"wrote {args.mnist_npz} and {args.site} ({size / 2**20:.1f} MiB in {CARRY_DIR}); carry {CARRY_DIR} to the "
          "GPU host and run `bash benchmarks/gpu_check.sh` there")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.without_tensorflow:
        from benchmarks import _without_tensorflow

        _without_tensorflow.block()
    if args.prepare:
        prepare(args)
        return {}
    from benchmarks import report
    from benchmarks.inputs import resolve_source, tensorflow_available

    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    deadline = clock + args.budget
    output = args.output or os.environ.get("OUT") or report.RESULTS_DIR
    path = report.unused_path(output, f"gpu-check-{started.date().isoformat()}")
    logs = os.path.join(output, "gpu_check_logs")
    tensorflow = tensorflow_available()
    scratch = tempfile.mkdtemp(prefix="gpu_check-")
    site, carried = extra_site(os.path.join(ROOT, args.site), scratch)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, site, env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.without_tensorflow:
        env["BENCHMARKS_WITHOUT_TENSORFLOW"] = "1"
    if args.backend:
        env["JAX_PLATFORMS"] = args.backend
    # This process never needs the accelerator; should an import here start JAX's backend, it must
    # not take the memory the steps' processes will want (JAX preallocates 75% of a GPU).
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    needed = ("numpy", "jax", "flax", "optax", "tqdm", "chex")  # jaxvision's imports, and the tests'
    missing = [name for name in needed if not module_importable(name) and name not in carried]
    record: dict[str, Any] = {
        "gpu_check": {"started_utc": started.isoformat(timespec="seconds"), "dry_run": args.dry_run,
                      "argv": sys.argv[1:] if argv is None else argv, "budget_s": args.budget,
                      "python": sys.version.split()[0], "jax_platforms": env.get("JAX_PLATFORMS"),
                      "tensorflow": tensorflow, "simulated_without_tensorflow": args.without_tensorflow,
                      "carried_modules": carried, "missing_modules": missing},
        "throughput": [], "machine": None, "steps": {}, "notes": [],
    }

    def save() -> None:
        record["gpu_check"]["wall_seconds"] = round(time.perf_counter() - clock, 1)
        report.write_json(record, path)

    def note(text: str) -> None:
        record["notes"].append(text)
        print(f"  note: {text}", flush=True)

    print(f"gpu_check{' (dry run)' if args.dry_run else ''}: record {path}, budget {args.budget:.0f} s, "
          f"JAX_PLATFORMS={env.get('JAX_PLATFORMS') or '(JAX chooses)'}, kernels {args.kernels}", flush=True)
    if not tensorflow:
        note("TensorFlow is not importable" + (" (simulated)" if args.without_tensorflow else "")
             + ": synthetic inputs, no pipeline rows; test modules that import it are left out")
    if carried:
        note(f"from {args.site}: {', '.join(carried)}")
    if missing:
        note(f"not importable: {', '.join(missing)} (jaxvision or its tests need them): steps will fail; "
             f"carry pure-Python ones in {args.site} (--prepare copies pytest and tqdm)")

    # The steps' modules, imported here as the steps import them: none may need TensorFlow to import.
    from benchmarks import pipeline_bench, run, time_to_accuracy  # noqa: F401
    from benchmarks.jax_bench import MODELS_BY_NAME, available_models

    record["gpu_check"]["tensorflow_loaded"] = [m for m in TENSORFLOW_MODULES if sys.modules.get(m) is not None]

    # 1. The benchmark rows, one process each.
    available_models(sorted({row.model for row in args.rows}), args.backend or "gpu")  # unknown names fail here
    print("1. benchmark rows", flush=True)
    runs_dir = os.path.join(scratch, "runs")
    for index, row in enumerate(args.rows):
        out = os.path.join(runs_dir, str(index))
        command = row_command(row, args, out)
        limit = ROW_LIMIT_S.get(row.model, DEFAULT_ROW_LIMIT_S)
        name = f"row-{row.model}-{row.dtype}-{row.batch_size}"
        images = resolve_source("auto", MODELS_BY_NAME[row.model].input_shape)
        if args.dry_run:
            run.parse_args(command[3:])  # the step's own parser checks its arguments
            print(f"  {row} (up to {limit} s; {images} inputs): {shlex.join(command[1:])}")
            record["steps"][name] = {"command": command, "limit_s": limit, "would_run": True}
            continue
        limit = min(limit, deadline - time.perf_counter())
        if limit < 10:
            note(f"{row}: skipped, the budget is spent")
            continue
        step = record["steps"][name] = run_step(name, command, limit=limit, env=env, logs=logs)
        records = sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".json")) if os.path.isdir(out) else []
        if records:
            with open(records[0]) as f:
                result = json.load(f)
            record["machine"] = record["machine"] or result["machine"]
            record["throughput"] += result["throughput"]
            step["record"] = {key: result[key] for key in ("peak_flops", "notes", "wall_seconds") if key in result}
        save()

    # 2. MNIST time to 99%.
    print("2. MNIST time to 99%", flush=True)
    source, source_note = mnist_source(args, tensorflow)
    if args.no_time_to_accuracy:
        record["steps"]["time_to_accuracy"] = {"skipped": "--no-time-to-accuracy"}
        print("  skipped: --no-time-to-accuracy")
    elif source is None:
        record["steps"]["time_to_accuracy"] = {"skipped": source_note}
        note(f"time to accuracy {source_note}")
    else:
        json_path = os.path.join(scratch, "time_to_accuracy.json")
        command = time_to_accuracy_command(args, args.mnist_npz if source == "npz" else None, json_path)
        if args.dry_run:
            time_to_accuracy.parse_args(command[3:])
            print(f"  {source_note} (up to {TIME_TO_ACCURACY_LIMIT_S} s): {shlex.join(command[1:])}")
            record["steps"]["time_to_accuracy"] = {"command": command, "would_run": True, "source": source_note}
        else:
            limit = min(TIME_TO_ACCURACY_LIMIT_S, deadline - time.perf_counter() - MIN_TEST_S * bool(args.tests))
            if limit < 10:
                note("time to accuracy: skipped, the budget is spent")
            else:
                step = record["steps"]["time_to_accuracy"] = run_step("time_to_accuracy", command, limit=limit,
                                                                        env=env, logs=logs)
                step["source"] = source_note
                if os.path.isfile(json_path):
                    with open(json_path) as f:
                        record["time_to_accuracy"] = json.load(f)
            save()

    # 3. The model and train-step tests, reference kernels.
    print("3. model and train-step tests", flush=True)
    files, excluded = plan_tests(args.tests, tensorflow)
    for item in excluded:
        note(f"{item['file']} left out: {item['reason']}")
    junit_xml = os.path.join(output, "gpu_check_pytest.xml")
    command = pytest_command(files, args.markers, junit_xml, without_tensorflow=args.without_tensorflow)
    tests: dict[str, Any] = {"files": files, "excluded": excluded, "markers": args.markers}
    record["steps"]["tests"] = tests
    if not files:
        tests["skipped"] = "no test files to run"
        print("  skipped: no test files to run")
    elif not module_importable("pytest") and "pytest" not in carried:
        tests["skipped"] = f"pytest is not installed here; carry it in {args.site} (--prepare)"
        note(f"tests {tests['skipped']}")
    elif args.dry_run:
        print(f"  {len(files)} file(s), -m {args.markers!r} (the time left, at least {MIN_TEST_S} s): "
              f"{shlex.join(command[1:])}")
        tests.update(command=command, would_run=True)
    else:
        limit = max(deadline - time.perf_counter(), MIN_TEST_S)
        tests.update(run_step("tests", command, limit=limit, env=env, logs=logs))
        tests["results"] = junit_summary(junit_xml)
        results = tests["results"]
        if results:
            print(f"  {results['passed']} passed, {results['failures']} failed, {results['errors']} errors, "
                  f"{results['skipped']} skipped", flush=True)

    backend = (record["machine"] or {}).get("backend")
    if not args.dry_run and backend and backend != "gpu":
        note(f"the rows ran on {backend}, not on a GPU")
    save()
    shutil.rmtree(scratch, ignore_errors=True)
    if record["throughput"]:
        print("\n" + report.throughput_table(record["throughput"]))
    print(f"\nwrote {path} ({record['gpu_check']['wall_seconds']:.0f} s)")
    return record


if __name__ == "__main__":
    main()
