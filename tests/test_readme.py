"""The README's Python example runs as written: offline on digits, and (slow) on real MNIST."""

import contextlib
import io
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
OFFLINE = 'DATASET, MODEL = "digits", "mlp"'
AS_WRITTEN = 'DATASET, MODEL = "mnist", "lenet5"'


def api_blocks() -> list[str]:
    """The ```python blocks of the section "The Python API in 15 lines"."""
    text = open(README).read()
    section = text.split("## The Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def run(code: str) -> tuple[dict, str]:
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, README, "exec"), namespace)
    return namespace, out.getvalue()


def test_the_example_and_its_fit_alternative_run_offline():
    loop, alternative = api_blocks()
    assert AS_WRITTEN in loop
    namespace, printed = run(loop.replace(AS_WRITTEN, OFFLINE))
    accuracy = float(re.search(r"'accuracy': ([0-9.]+)", printed).group(1))
    assert accuracy > 0.9, printed  # 3 epochs of an MLP on digits reach ~0.96
    # The alternative starts from a fresh state, not from the trained one.
    setup = loop.replace(AS_WRITTEN, OFFLINE).split("for epoch in range(3):")[0]
    namespace, _ = run(setup + alternative.replace("patience=2)", "patience=2, progress=False)"))
    assert namespace["result"].test["accuracy"] > 0.9


@pytest.mark.slow
def test_the_example_runs_as_written_on_mnist(mnist_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", mnist_dir)
    loop, _ = api_blocks()
    _, printed = run(loop)
    assert float(re.search(r"'accuracy': ([0-9.]+)", printed).group(1)) > 0.98, printed
