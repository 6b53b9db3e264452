"""``jaxvision.export`` and ``jaxvision export``: StableHLO and SavedModel artefacts that equal ``Run.predict``.

The oracle is ``load_run(run_dir).predict`` (jaxvision's own eval path, with the CPU kernels on this
host), and for the StableHLO file a fresh Python that cannot import jaxvision or flax at all.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxvision.cli.main import main as run_cli

# Batch sizes the exports never saw: they are traced with a symbolic batch "b".
BATCHES = (3, 7)

# A fresh interpreter that refuses to import jaxvision or flax: the artefact must need neither.
_FRESH_CALLER = r"""
import sys

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jaxvision", "flax"):
            raise ImportError(f"{name} must not be needed to call an export")
        return None

sys.meta_path.insert(0, _Refuse())
import jax
import numpy as np

artefact, inputs, outputs = sys.argv[1:]
exported = jax.export.deserialize(bytearray(open(artefact, "rb").read()))
np.save(outputs, np.asarray(exported.call(np.load(inputs))))
assert not [name for name in sys.modules if name.split(".")[0] in ("jaxvision", "flax")], sorted(sys.modules)
print(exported.platforms, exported.in_avals[0].shape)
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """conftest's per-test JAXVISION_CACHE_DIR, set for this module's fixtures."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXVISION_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jaxvision_cache"))
        yield


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, environment):
    """A real one-epoch MLP run on digits (8x8x1, 10 classes), made by ``jaxvision train``."""
    path = str(tmp_path_factory.mktemp("mlp") / "run")
    assert run_cli(["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--no-progress",
                    "--output-dir", path]) == 0
    return path


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    """A ResNet-20 run folder written without training (random He-scaled weights, no compile): 8x8x3
    inputs, 3 classes, per-channel normalisation, and batch norm statistics far from their initial
    (0, 1), so eval mode must use the stored ones."""
    from jaxvision.models import get_model
    from jaxvision.run_record import save_model, write_run_file

    path = str(tmp_path_factory.mktemp("resnet") / "run")
    os.makedirs(path)
    model = get_model("resnet20", num_classes=3, kernels="reference")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32), train=False))
    rng = np.random.default_rng(0)

    def draw(key_path, leaf):
        name = jax.tree_util.keystr(key_path)
        if "kernel" in name:
            # A smaller head keeps the softmax off its saturated corners, where every error would vanish.
            gain = 0.05 if "head" in name else 2.0
            return rng.normal(0.0, np.sqrt(gain / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        low, high = {"scale": (0.5, 1.5), "var": (0.5, 2.0)}.get(name.split("'")[-2], (-0.5, 0.5))
        return rng.uniform(low, high, leaf.shape).astype(np.float32)

    save_model(path, jax.tree_util.tree_map_with_path(draw, shapes))
    write_run_file(path, {
        "status": "complete",
        "model": {"name": "resnet20", "arguments": {"num_classes": 3}},
        "num_classes": 3,
        "class_names": ["cat", "dog", "ship"],
        "input_shape": [8, 8, 3],
        "normalization": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]},
    })
    return path


@pytest.fixture(scope="module")
def resnet_exports(resnet_run, tmp_path_factory):
    """The ResNet run exported in both formats, for the CPU only (lowering for three platforms triples the work)."""
    from jaxvision.export import export_run

    folder = tmp_path_factory.mktemp("resnet_exports")
    stablehlo = export_run(resnet_run, str(folder / "resnet.stablehlo"), platforms=("cpu",))
    savedmodel = export_run(resnet_run, str(folder / "resnet_savedmodel"), format="savedmodel", platforms=("cpu",))
    return stablehlo, savedmodel


def _images(batch, shape, seed):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (batch, *shape)).astype(np.float32)


def _predict(run_dir, images):
    from jaxvision.run_record import load_run

    return load_run(run_dir).predict(images)


@pytest.fixture(scope="module")
def mlp_stablehlo(mlp_run, tmp_path_factory):
    from jaxvision.export import export_run

    path = str(tmp_path_factory.mktemp("mlp_export") / "mlp.stablehlo")
    assert export_run(mlp_run, path) == path
    return path


def test_stablehlo_round_trip_equals_predict_at_unseen_batch_sizes(mlp_stablehlo, mlp_run):
    exported = jax.export.deserialize(bytearray(open(mlp_stablehlo, "rb").read()))
    for seed, batch in enumerate(BATCHES):
        images = _images(batch, (8, 8, 1), seed)
        probabilities = np.asarray(exported.call(images))
        np.testing.assert_allclose(probabilities, _predict(mlp_run, images), atol=1e-5, rtol=0)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_stablehlo_file_is_called_in_a_fresh_process_without_jaxvision(mlp_stablehlo, mlp_run, tmp_path):
    images = _images(5, (8, 8, 1), 11)
    np.save(tmp_path / "images.npy", images)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_CALLER, mlp_stablehlo, str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), _predict(mlp_run, images), atol=1e-5, rtol=0)


def test_stablehlo_is_batch_polymorphic_multi_platform_and_described_by_its_sidecar(mlp_stablehlo, mlp_run):
    exported = jax.export.deserialize(bytearray(open(mlp_stablehlo, "rb").read()))
    assert str(exported.in_avals[0].shape[0]) == "b" and exported.in_avals[0].shape[1:] == (8, 8, 1)
    assert exported.in_avals[0].dtype == np.float32 and str(exported.out_avals[0].shape) == "(b, 10)"
    assert exported.platforms == ("cpu", "cuda", "tpu")
    with open(mlp_stablehlo + ".json") as f:
        sidecar = json.load(f)
    with open(os.path.join(mlp_run, "run.json")) as f:
        record = json.load(f)
    assert sidecar["class_names"] == [str(digit) for digit in range(10)] == record["class_names"]
    assert sidecar["input_shape"] == [8, 8, 1] and sidecar["num_classes"] == 10
    assert sidecar["export_format"] == "stablehlo" and sidecar["platforms"] == ["cpu", "cuda", "tpu"]
    assert sidecar["versions"]["jax"] == jax.__version__ and "jaxvision" in sidecar["versions"]
    assert sidecar["normalization"]["mean"] == record["normalization"]["mean"]


def test_batch_norm_network_round_trips_in_both_formats(resnet_exports, resnet_run):
    tf = pytest.importorskip("tensorflow")
    stablehlo, savedmodel = resnet_exports
    images = _images(5, (8, 8, 3), 5)
    expected = _predict(resnet_run, images)
    assert expected.max() < 0.99  # not saturated: the comparison below can see a wrong statistic
    exported = jax.export.deserialize(bytearray(open(stablehlo, "rb").read()))
    np.testing.assert_allclose(np.asarray(exported.call(images)), expected, atol=1e-5, rtol=0)
    served = tf.saved_model.load(savedmodel).serve(tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)


def test_stablehlo_lowers_each_convolution_to_one_plain_op_and_has_no_custom_calls(resnet_exports, resnet_run):
    """The reference layers, not the CPU kernels (whose few-channel stem is a stencil loop, not a convolution)."""
    from jaxvision.run_record import load_run

    text = jax.export.deserialize(bytearray(open(resnet_exports[0], "rb").read())).mlir_module()
    flat = jax.tree_util.tree_flatten_with_path(load_run(resnet_run).variables["params"])[0]
    convolutions = sum(1 for key_path, leaf in flat if leaf.ndim == 4 and "kernel" in jax.tree_util.keystr(key_path))
    assert convolutions == 19  # the stem and 18 in the blocks; ResNet-20's shortcuts are parameter-free
    assert len(re.findall(r"stablehlo\.convolution", text)) == convolutions
    assert set(re.findall(r"custom_call @(\w+)", text)) == {"shape_assertion"}


def test_savedmodel_reloads_with_a_batch_free_serving_signature(mlp_run, tmp_path):
    tf = pytest.importorskip("tensorflow")
    from jaxvision.export import export_run

    path = export_run(mlp_run, str(tmp_path / "saved"), format="savedmodel")
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].shape.as_list() == [None, 8, 8, 1]
    for seed, batch in enumerate(BATCHES):
        images = _images(batch, (8, 8, 1), seed + 20)
        probabilities = signature(images=tf.constant(images))["probabilities"].numpy()
        np.testing.assert_allclose(probabilities, _predict(mlp_run, images), atol=1e-5, rtol=0)
    with open(os.path.join(path, "jaxvision.json")) as f:
        sidecar = json.load(f)
    assert sidecar["export_format"] == "savedmodel" and sidecar["input_shape"] == [8, 8, 1]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_cli_prints_what_it_wrote_the_signature_and_how_to_call_it(mlp_run, tmp_path, capsys):
    output = str(tmp_path / "model.stablehlo")
    assert run_cli(["export", mlp_run, "--format", "stablehlo", "--output", output, "--platforms", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {output} (stablehlo" in printed and f"{output}.json" in printed
    assert "float32[batch, 8, 8, 1]" in printed and "float32[batch, 10]" in printed
    assert "jax.export.deserialize" in printed
    assert jax.export.deserialize(bytearray(open(output, "rb").read())).platforms == ("cpu",)
    before = open(output, "rb").read()
    assert run_cli(["export", mlp_run, "--output", output, "--overwrite"]) == 0
    assert open(output, "rb").read() != before  # now lowered for three platforms
    assert sorted(os.listdir(tmp_path)) == ["model.stablehlo", "model.stablehlo.json"]


def _refused(argv, capsys):
    status = run_cli(argv)
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and error.startswith("jaxvision export: error: "), error
    return error


def test_cli_refuses_bad_input_in_one_line_and_leaves_nothing(mlp_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert "has no run.json" in _refused(["export", str(tmp_path / "missing"), "--output", str(out / "m")], capsys)
    (out / "taken.stablehlo").write_bytes(b"keep")
    error = _refused(["export", mlp_run, "--output", str(out / "taken.stablehlo")], capsys)
    assert "exists; pass --overwrite" in error
    assert "does not exist" in _refused(["export", mlp_run, "--output", str(out / "no" / "m")], capsys)
    assert "is not a folder" in _refused(["export", mlp_run, "--output", str(out / "taken.stablehlo" / "m")], capsys)
    error = _refused(["export", mlp_run, "--format", "savedmodel", "--overwrite",
                      "--output", str(out / "taken.stablehlo")], capsys)
    assert "it is a file and a savedmodel export is a folder" in error
    assert "Unknown platform 'gpu'" in _refused(["export", mlp_run, "--output", str(out / "m"), "--platforms", "gpu"],
                                                 capsys)
    assert sorted(os.listdir(out)) == ["taken.stablehlo"] and (out / "taken.stablehlo").read_bytes() == b"keep"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["export", mlp_run, "--format", "onnx", "--output", str(out / "m")])
    assert exit_info.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err


def test_python_api_refuses_an_unknown_format_before_loading_the_run(tmp_path):
    from jaxvision.export import export_run

    with pytest.raises(ValueError, match=r"Unknown export format 'onnx'.*Did you mean|Unknown export format 'onnx'"):
        export_run(str(tmp_path / "not_a_run"), str(tmp_path / "m"), format="onnx")


@pytest.mark.parametrize("format", ["stablehlo", "savedmodel"])
def test_a_failure_while_writing_leaves_no_partial_artefact(format, mlp_run, tmp_path, monkeypatch):
    from jaxvision import export, jsonio

    if format == "savedmodel":
        pytest.importorskip("tensorflow")

    def fail(path, value):
        raise OSError("disk full")

    # The sidecar is written after the artefact's bytes (or the SavedModel's files), just before the rename.
    monkeypatch.setattr(jsonio, "write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        export.export_run(mlp_run, str(tmp_path / "model"), format=format, platforms=("cpu",))
    assert os.listdir(tmp_path) == []
