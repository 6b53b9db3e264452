"""torchvision state_dicts into jaxvision's models and back (jaxvision.pretrained), the weights catalog and CLI.

The oracle is a PyTorch twin of each torchvision model (benchmarks/torchvision_twins.py, written from
torchvision's source with its attribute names), with every weight and batch-norm statistic redrawn:
its state_dict, loaded by ``load_torchvision``, must give the twin's eval-mode logits to 1e-4
relative, and ``to_torchvision`` must give the state_dict back bit for bit.
"""

import hashlib
import importlib
import json
import os
import sys
import urllib.error

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.cli.main import main
from jaxvision.models import get_model
from jaxvision.pretrained import catalog, load_torchvision, save_state_dict, to_torchvision
from jaxvision.pretrained.torchvision import SUPPORTED_MODELS

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from benchmarks import torchvision_twins as twins  # noqa: E402  (imports torch)

# (image size, batch, num_classes) per model. Small inputs keep it fast; a VGG on 32x32 ends in a 1x1
# map that the adaptive pool repeats 7x7, which would hide a flatten in the wrong (H, W) order, so
# vgg11 runs at 224x224 (a 7x7 map of distinct values, the pool the identity), and AlexNet at
# 127x127 (3x3, each value repeated 2x2) besides 224x224 below. A 1000-class head (torchvision's)
# for a few, small heads elsewhere.
PARITY_CASES = {
    "alexnet": (127, 2, 1000), "vgg11": (224, 1, 1000), "vgg13": (32, 2, 10), "vgg16": (32, 2, 10),
    "vgg19": (32, 2, 10), "vgg11_bn": (32, 2, 10), "vgg13_bn": (32, 2, 10), "vgg16_bn": (32, 2, 10),
    "vgg19_bn": (32, 2, 3), "resnet18": (64, 2, 1000), "resnet34": (32, 2, 10), "resnet50": (32, 2, 10),
    "resnet101": (32, 2, 10), "resnet152": (32, 2, 10),
}


def _images(size, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype(np.float32)


def _twin_logits(twin, images):
    with torch.no_grad():
        return twin(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def _assert_logits_close(ours, theirs):
    assert ours.shape == theirs.shape
    relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert relative < 1e-4, f"max |ours - theirs| / max |theirs| = {relative:.2e}"


def _state_dict(twin):
    return twins.state_dict_numpy(twin)


def test_every_supported_model_has_a_parity_case_and_a_twin():
    assert set(PARITY_CASES) == set(SUPPORTED_MODELS) == set(twins.NAMES)


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_loaded_weights_give_the_twins_logits_and_round_trip_bitwise(name):
    size, batch, num_classes = PARITY_CASES[name]
    twin = twins.random_twin(name, num_classes)
    state_dict = _state_dict(twin)
    variables = load_torchvision(name, state_dict)

    model = get_model(name, num_classes=num_classes, kernels="reference")
    # Every leaf of the model's own variables is filled, with its shape, float32, and nothing else.
    abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    assert jax.tree.structure(variables) == jax.tree.structure(dict(abstract))
    for leaf, want in zip(jax.tree.leaves(variables), jax.tree.leaves(abstract)):
        assert isinstance(leaf, np.ndarray) and leaf.shape == want.shape and leaf.dtype == np.float32

    images = _images(size, batch)
    _assert_logits_close(np.asarray(model.apply(variables, images, train=False)), _twin_logits(twin, images))

    back = to_torchvision(name, variables)
    assert list(back) == list(state_dict)  # torchvision's order, num_batches_tracked included
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            assert back[key].dtype == np.int64 and back[key].shape == ()
        else:
            assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key


def test_alexnet_logits_match_at_224_where_the_adaptive_pool_is_the_identity():
    # At 224x224 the pooled map is 6x6 of distinct values, as with torchvision's own weights (vgg11's
    # parity case above is at 224x224 too).
    twin = twins.random_twin("alexnet", 10, seed=3)
    variables = load_torchvision("alexnet", _state_dict(twin))
    images = _images(224, batch=1, seed=3)
    model = get_model("alexnet", num_classes=10, kernels="reference")
    _assert_logits_close(np.asarray(jax.jit(model.apply)(variables, images)), _twin_logits(twin, images))


def test_loaded_weights_work_with_the_cpu_kernels_too():
    twin = twins.random_twin("resnet18", 10, seed=4)
    variables = load_torchvision("resnet18", _state_dict(twin))
    images = _images(32, seed=4)
    model = get_model("resnet18", num_classes=10, kernels="cpu")
    _assert_logits_close(np.asarray(model.apply(variables, images, train=False)), _twin_logits(twin, images))


def test_twin_keys_are_torchvisions_resnet18():
    # Written by hand from torchvision/models/resnet.py: conv1, bn1, layer1-4 of two BasicBlocks
    # (conv1, bn1, conv2, bn2; downsample.0/.1 in the first block of layers 2-4), fc.
    keys = list(twins.random_twin("resnet18", 1000).state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert keys[:7] == ["conv1.weight", *(f"bn1.{k}" for k in bn), "layer1.0.conv1.weight"]
    assert keys[-8:] == ["layer4.1.conv2.weight", *(f"layer4.1.bn2.{k}" for k in bn), "fc.weight", "fc.bias"]
    assert "layer3.1.downsample.0.weight" not in keys and "layer1.0.downsample.0.weight" not in keys
    assert keys[keys.index("layer2.0.bn2.num_batches_tracked") + 1] == "layer2.0.downsample.0.weight"
    assert len(keys) == 122  # 62 parametrised tensors + 20 batch norms x 3 buffers


def test_twin_keys_are_torchvisions_vgg11_bn():
    # make_layers("A", batch_norm=True): conv, bn, relu per width, one pool per "M":
    # 64 (0-2) M3 128 (4-6) M7 256 (8-10) 256 (11-13) M14 512 (15-17) 512 (18-20) M21 512 (22-24) 512 (25-27) M28.
    keys = list(twins.random_twin("vgg11_bn", 1000).state_dict())
    convs = [0, 4, 8, 11, 15, 18, 22, 25]
    assert [k for k in keys if k.startswith("features.") and k.endswith(".weight") and int(k.split(".")[1]) in convs] == [
        f"features.{i}.weight" for i in convs
    ]
    assert keys[:8] == ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                        "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked",
                        "features.4.weight"]
    assert keys[-6:] == ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
                         "classifier.6.weight", "classifier.6.bias"]
    assert len(keys) == 8 * 2 + 8 * 5 + 3 * 2


@pytest.mark.parametrize("name", [entry.model for entry in catalog.WEIGHTS if entry.tag == "IMAGENET1K_V1"])
def test_twin_parameter_counts_are_torchvisions_published_ones(name):
    with torch.device("meta"):
        count = sum(p.numel() for p in twins.build(name, 1000).parameters())
    assert count == catalog.get_weights(name).num_params


# --- sources -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_twin():
    return twins.random_twin("resnet18", 5, seed=7)


def test_pth_safetensors_npz_and_mapping_load_the_same(resnet18_twin, tmp_path):
    from safetensors.torch import save_file

    state_dict = resnet18_twin.state_dict()
    torch.save(state_dict, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in state_dict.items()})
    reference = load_torchvision("resnet18", state_dict)  # torch tensors, straight from the module
    for file in ("w.pth", "w.safetensors", "w.npz"):
        loaded = load_torchvision("resnet18", tmp_path / file)
        assert jax.tree.structure(loaded) == jax.tree.structure(reference)
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(reference)):
            assert np.array_equal(a, b), file


def test_num_classes_comes_from_the_files_head(resnet18_twin):
    variables = load_torchvision("resnet18", resnet18_twin.state_dict())
    assert variables["params"]["head"]["kernel"].shape == (512, 5)
    with pytest.raises(ValueError, match=r"fc\.weight: got \(5, 512\), expected \(7, 512\).*num_classes=None"):
        load_torchvision("resnet18", resnet18_twin.state_dict(), num_classes=7)


def test_saved_state_dict_is_accepted_by_a_strict_load_state_dict(resnet18_twin, tmp_path):
    variables = load_torchvision("resnet18", resnet18_twin.state_dict())
    path = save_state_dict(tmp_path / "out" / "exported.pth", to_torchvision("resnet18", variables))
    fresh = twins.build("resnet18", 5)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    images = _images(32, seed=8)
    np.testing.assert_array_equal(_twin_logits(fresh.eval(), images), _twin_logits(resnet18_twin, images))
    assert os.listdir(tmp_path / "out") == ["exported.pth"]  # no temporary file left beside it


def test_safetensors_and_npz_load_without_torch(resnet18_twin, tmp_path, monkeypatch):
    from jaxvision.pretrained.state_dict import read_state_dict

    arrays = _state_dict(resnet18_twin)
    save_state_dict(tmp_path / "w.safetensors", arrays)
    save_state_dict(tmp_path / "w.npz", arrays)
    torch.save(resnet18_twin.state_dict(), tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    for file in ("w.safetensors", "w.npz"):
        loaded = read_state_dict(tmp_path / file)
        assert sorted(loaded) == sorted(arrays) and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
    with pytest.raises(ValueError, match=r"needs PyTorch.*pip install torch.*\.safetensors or \.npz"):
        read_state_dict(tmp_path / "w.pth")


# --- errors --------------------------------------------------------------------------------------


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_every_wrong_key_is_listed_in_one_error(resnet18_twin):
    state_dict = dict(_state_dict(resnet18_twin))
    del state_dict["fc.bias"], state_dict["layer1.0.bn1.running_var"]
    state_dict["extra.weight"] = np.zeros(3, np.float32)
    state_dict["conv1.weight"] = np.zeros((64, 3, 5, 5), np.float32)
    state_dict["bn1.weight"] = np.ones(64, np.int32)
    state_dict["layer2.0.conv1.weight"] = np.full((128, 64, 3, 3), np.nan, np.float32)
    with pytest.raises(ValueError) as error:
        load_torchvision("resnet18", state_dict)
    message = _one_line(error)
    for part in ("2 missing keys (layer1.0.bn1.running_var, fc.bias)", "1 unexpected key (extra.weight)",
                 "1 shape mismatch (conv1.weight: got (64, 3, 5, 5), expected (64, 3, 7, 7))",
                 "1 non-float array (bn1.weight: int32)", "1 array with NaN or inf (layer2.0.conv1.weight)"):
        assert part in message


def test_long_lists_show_ten_and_count_the_rest(resnet18_twin):
    state_dict = {k: v for k, v in _state_dict(resnet18_twin).items() if not k.startswith("layer4.")}
    with pytest.raises(ValueError) as error:
        load_torchvision("resnet18", state_dict)
    # layer4: 2 blocks x (2 convs + 2 BNs x 4) + downsample (conv + BN x 4) = 25 keys without num_batches_tracked.
    assert "25 missing keys (layer4.0.conv1.weight, layer4.0.bn1.weight," in _one_line(error)
    assert "and 15 more)" in str(error.value)


def test_unknown_name_lists_the_supported_ones():
    with pytest.raises(ValueError) as error:
        load_torchvision("resnet20", {})
    assert "alexnet, vgg11, vgg13" in _one_line(error) and "resnet152" in str(error.value)


def test_a_training_checkpoint_and_data_parallel_keys_get_a_hint(resnet18_twin):
    arrays = _state_dict(resnet18_twin)
    with pytest.raises(ValueError, match=r"training checkpoint.*checkpoint\['state_dict'\]"):
        load_torchvision("resnet18", {"state_dict": arrays, "epoch": 3})
    with pytest.raises(ValueError, match=r"start with 'module\.'"):
        load_torchvision("resnet18", {f"module.{k}": v for k, v in arrays.items()})


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    for path, pattern in ((tmp_path / "junk.pth", "Cannot read .* as a PyTorch state_dict"),
                          (tmp_path / "junk.safetensors", "Cannot read .* as safetensors"),
                          (tmp_path / "missing.npz", "not found"), (tmp_path / "w.ckpt", "extension '.ckpt'")):
        with pytest.raises(ValueError, match=pattern) as error:
            load_torchvision("resnet18", path)
        _one_line(error)


def test_to_torchvision_lists_wrong_leaves():
    variables = load_torchvision("resnet18", _state_dict(twins.random_twin("resnet18", 4, seed=9)))
    del variables["batch_stats"]["stem_bn"]
    variables["params"]["stem_conv"]["kernel"] = np.zeros((3, 3, 3, 64), np.float32)
    with pytest.raises(ValueError) as error:
        to_torchvision("resnet18", variables)
    message = _one_line(error)
    assert "2 missing leaves (batch_stats/stem_bn/mean, batch_stats/stem_bn/var)" in message
    assert "params/stem_conv/kernel: got (3, 3, 3, 64), expected (7, 7, 3, 64)" in message


# --- catalog and download ------------------------------------------------------------------------


def test_catalog_entries_are_consistent():
    assert {entry.model for entry in catalog.WEIGHTS} == set(SUPPORTED_MODELS)
    for entry in catalog.WEIGHTS:
        assert entry.url == "https://download.pytorch.org/models/" + entry.file_name
        assert len(entry.sha256_prefix) == 8 and entry.file_name.endswith(f"-{entry.sha256_prefix}.pth")
        assert 50 < entry.top1 < entry.top5 < 100
        assert (entry.resize_size, entry.crop_size) == ((232, 224) if entry.tag == "IMAGENET1K_V2" else (256, 224))
    assert catalog.weights_for_file("/some/where/resnet50-11ad3fa6.pth").tag == "IMAGENET1K_V2"
    assert catalog.weights_for_file("mine.pth") is None


def test_importing_the_package_touches_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access at import")

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    importlib.reload(catalog)
    importlib.reload(importlib.import_module("jaxvision.pretrained"))


def _fake_entry(monkeypatch, payload):
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    entry = catalog.TorchvisionWeights("resnet18", "TEST", f"resnet18-{prefix}.pth", 70.0, 90.0, 11_689_512)
    monkeypatch.setattr(catalog, "WEIGHTS", (*catalog.WEIGHTS, entry))
    return entry


def test_download_checks_the_hash_and_renames_into_place(tmp_path, monkeypatch):
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB chunks and a remainder
    (tmp_path / "source.bin").write_bytes(payload)
    entry = _fake_entry(monkeypatch, payload)
    target = tmp_path / "weights"
    path = catalog.download("resnet18", target, tag="TEST", url=(tmp_path / "source.bin").as_uri(), progress=False)
    assert path == str(target / entry.file_name) and open(path, "rb").read() == payload
    assert os.listdir(target) == [entry.file_name]
    # A good file already there is kept: no second fetch.
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    assert catalog.download("resnet18", target, tag="TEST", progress=False) == path


def test_a_hash_mismatch_leaves_nothing_behind(tmp_path):
    (tmp_path / "source.bin").write_bytes(b"definitely not resnet18")
    with pytest.raises(ValueError, match=r"SHA-256 .* expected one starting f37072fd.*not kept") as error:
        catalog.download("resnet18", tmp_path / "weights", url=(tmp_path / "source.bin").as_uri(), progress=False)
    _one_line(error)
    assert not (tmp_path / "weights").exists()


def test_no_network_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    (tmp_path / "weights").mkdir()
    with pytest.raises(ValueError) as error:
        catalog.download("vgg16", tmp_path / "weights", progress=False)
    assert _one_line(error) == (
        "Cannot download https://download.pytorch.org/models/vgg16-397923af.pth: Name or service not known. Download "
        "it on a machine with internet access from https://download.pytorch.org/models/vgg16-397923af.pth and pass "
        "the file with --weights FILE."
    )
    assert os.listdir(tmp_path / "weights") == []


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_prints_the_table_and_how_to_load(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    for entry in catalog.WEIGHTS:
        line = next(line for line in out.splitlines() if entry.file_name in line)
        assert line.split()[:2] == [entry.model, entry.tag] and f"{entry.top1:.3f}" in line and entry.url in line
    assert "jaxvision train --model resnet18 --weights resnet18-f37072fd.pth" in out
    assert "load_torchvision('resnet18', 'resnet18-f37072fd.pth')" in out


def test_cli_json_is_the_catalog(capsys):
    assert main(["weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["tag"], r["sha256_prefix"], r["url"]) for r in rows] == [
        (w.model, w.tag, w.sha256_prefix, w.url) for w in catalog.WEIGHTS
    ]


@pytest.mark.parametrize("argv, message", [
    (["--download", "resnet20"], "Unknown model with torchvision weights 'resnet20'"),
    (["--download", "resnet18", "--tag", "IMAGENET1K_V2"], "has no torchvision weights 'IMAGENET1K_V2'"),
    (["--tag", "IMAGENET1K_V2"], "--tag IMAGENET1K_V2 applies to a download"),
])
def test_cli_bad_input_is_one_line_and_status_2(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("network touched"))
    assert main(["weights", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxvision weights: error: ") and message in err and err.count("\n") == 1


def test_cli_download_from_a_mirror(tmp_path, monkeypatch, capsys):
    payload = b"weights" * 1000
    (tmp_path / "mirror.pth").write_bytes(payload)
    entry = _fake_entry(monkeypatch, payload)
    argv = ["weights", "--download", "resnet18", "--tag", "TEST", "--output-dir", str(tmp_path / "w"),
            "--url", (tmp_path / "mirror.pth").as_uri(), "--no-progress"]
    assert main(argv) == 0
    assert (tmp_path / "w" / entry.file_name).read_bytes() == payload
    assert "load_torchvision('resnet18'" in capsys.readouterr().out


# --- benchmark scripts ---------------------------------------------------------------------------


def test_parity_benchmark_reports_the_relative_difference(capsys):
    from benchmarks import pretrained_parity

    rows = pretrained_parity.main(["--models", "resnet18", "--kernels", "reference", "--image-size", "64", "--json"])
    assert [(r["model"], r["kernels"]) for r in rows] == [("resnet18", "reference")]
    assert rows[0]["max_relative_difference"] < 1e-4 and rows[0]["top1_agree"]
    assert json.loads(capsys.readouterr().out) == rows


def test_inference_benchmark_times_both_frameworks_on_the_same_weights():
    from benchmarks import inference

    args = inference.parse_args(["--model", "resnet18", "--image-size", "64", "--batch-size", "2", "--repeats", "1",
                                 "--warmup", "0", "--kernels", "reference", "--no-write"])
    record = inference.measure(args)
    jax_row, torch_row = record["rows"]
    assert (jax_row["framework"], jax_row["kernels"], torch_row["framework"]) == ("jaxvision", "reference", "pytorch")
    assert jax_row["max_relative_difference"] < 1e-4 and jax_row["step_s"]["repeats"] == 1
    assert jax_row["images_per_s"] == pytest.approx(2 / jax_row["step_s"]["median"])
    assert "| pytorch |" in inference.table(record["rows"])
