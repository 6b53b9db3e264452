"""Checkpoint checksums: intact directories pass; truncated, corrupted, incomplete or padded ones are refused."""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import integrity
from jaxvision.integrity import (
    MANIFEST,
    CorruptCheckpointError,
    describe_differences,
    has_manifest,
    leaf_signatures,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def checkpoint(tmp_path):
    """A directory shaped like an orbax checkpoint: files at the top and in nested folders."""
    root = tmp_path / "step_3"
    (root / "d").mkdir(parents=True)
    (root / "ocdbt.process_0" / "d").mkdir(parents=True)
    (root / "_METADATA").write_text('{"tree": {}}')
    (root / "d" / "c5fe").write_bytes(bytes(range(256)) * 8)
    (root / "ocdbt.process_0" / "d" / "e10e").write_bytes(np.arange(3000, dtype=np.float32).tobytes())
    (root / "empty").write_bytes(b"")
    return str(root)


def flip(path: str, offset: int = 100, count: int = 64) -> None:
    """Inverts ``count`` bytes of ``path`` in place, keeping its size."""
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def test_round_trip_records_every_nested_file(checkpoint):
    assert not has_manifest(checkpoint)
    path = write_manifest(checkpoint)
    assert path == os.path.join(checkpoint, MANIFEST) and has_manifest(checkpoint)
    verify_manifest(checkpoint)

    with open(path) as f:
        manifest = json.load(f)
    assert manifest["format"] == 1 and manifest["algorithm"] == "sha256"
    assert list(manifest["files"]) == ["_METADATA", "d/c5fe", "empty", "ocdbt.process_0/d/e10e"]
    assert manifest["files"]["d/c5fe"]["size"] == 2048
    assert manifest["files"]["empty"] == {  # sha256 of no bytes.
        "size": 0,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    # Writing again (e.g. after a re-save) does not list the manifest itself.
    write_manifest(checkpoint)
    verify_manifest(checkpoint)


def test_digest_reads_files_larger_than_one_chunk(tmp_path):
    data = np.random.default_rng(0).bytes(integrity._CHUNK * 2 + 17)
    (tmp_path / "big").write_bytes(data)
    write_manifest(str(tmp_path))
    with open(tmp_path / MANIFEST) as f:
        entry = json.load(f)["files"]["big"]
    assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    flip(str(tmp_path / "big"), offset=integrity._CHUNK + 5, count=1)  # Only in the second chunk.
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        verify_manifest(str(tmp_path))


def test_flipped_bytes_are_refused_naming_the_file(checkpoint):
    write_manifest(checkpoint)
    target = os.path.join(checkpoint, "ocdbt.process_0", "d", "e10e")
    flip(target)
    with pytest.raises(CorruptCheckpointError) as error:
        verify_manifest(checkpoint)
    message = str(error.value)
    assert message == (
        f"checkpoint file {target} does not match its sha256 checksum: it is corrupted; "
        f"delete {checkpoint} to fall back to an earlier checkpoint, or retrain"
    )


def test_truncated_file_is_refused(checkpoint):
    write_manifest(checkpoint)
    target = os.path.join(checkpoint, "d", "c5fe")
    os.truncate(target, 1000)
    with pytest.raises(CorruptCheckpointError, match="truncated") as error:
        verify_manifest(checkpoint)
    assert f"{target}: 1000 bytes, 2048 expected (truncated)" in str(error.value)
    assert "\n" not in str(error.value)


def test_grown_file_is_refused(checkpoint):
    write_manifest(checkpoint)
    target = os.path.join(checkpoint, "_METADATA")
    with open(target, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CorruptCheckpointError, match=r"13 bytes, 12 expected \(grown\)"):
        verify_manifest(checkpoint)


def test_deleted_file_is_refused_naming_it(checkpoint):
    write_manifest(checkpoint)
    target = os.path.join(checkpoint, "d", "c5fe")
    os.remove(target)
    with pytest.raises(CorruptCheckpointError, match="missing") as error:
        verify_manifest(checkpoint)
    assert f"checkpoint file {target} is missing" in str(error.value)


def test_extra_file_is_refused_naming_it(checkpoint):
    write_manifest(checkpoint)
    extra = os.path.join(checkpoint, "d", "added_later")
    with open(extra, "wb") as f:
        f.write(b"x")
    with pytest.raises(CorruptCheckpointError, match="do not list") as error:
        verify_manifest(checkpoint)
    assert extra in str(error.value)


def test_missing_manifest_is_refused(checkpoint):
    with pytest.raises(CorruptCheckpointError) as error:
        verify_manifest(checkpoint)
    assert str(error.value) == (
        f"checkpoint {checkpoint} has no checksums ({MANIFEST}): it was not written to the end; "
        "delete it to fall back to an earlier checkpoint"
    )


def test_interrupted_manifest_write_counts_as_missing(checkpoint):
    # A process killed mid-write leaves only the temporary file; the manifest never appears.
    leftover = os.path.join(checkpoint, f".{MANIFEST}.0123456789abcdef.tmp")
    with open(leftover, "w") as f:
        f.write('{"format": 1, "algorithm": "sha256", "files": {"_MET')
    assert not has_manifest(checkpoint)
    with pytest.raises(CorruptCheckpointError, match="has no checksums"):
        verify_manifest(checkpoint)
    # A later write succeeds, and the leftover is neither listed nor refused as an extra file.
    write_manifest(checkpoint)
    verify_manifest(checkpoint)
    with open(os.path.join(checkpoint, MANIFEST)) as f:
        assert not any(".tmp" in name for name in json.load(f)["files"])


def test_failed_replace_leaves_no_manifest_and_no_temporary(checkpoint, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(integrity.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_manifest(checkpoint)
    monkeypatch.undo()
    assert sorted(os.listdir(checkpoint)) == ["_METADATA", "d", "empty", "ocdbt.process_0"]
    with pytest.raises(CorruptCheckpointError, match="has no checksums"):
        verify_manifest(checkpoint)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": 2, "algorithm": "sha256", "files": {}}',
        '{"format": 1, "algorithm": "sha256", "files": {"../outside": {"size": 1, "sha256": "' + "0" * 64 + '"}}}',
        '{"format": 1, "algorithm": "sha256", "files": {"a": {"size": NaN, "sha256": "' + "0" * 64 + '"}}}',
    ],
)
def test_unreadable_manifest_is_refused(checkpoint, content):
    with open(os.path.join(checkpoint, MANIFEST), "w") as f:
        f.write(content)
    with pytest.raises(CorruptCheckpointError, match="has no checksums") as error:
        verify_manifest(checkpoint)
    assert "\n" not in str(error.value)


def test_write_manifest_refuses_a_directory_orbax_has_not_finished(tmp_path):
    with pytest.raises(NotADirectoryError, match="after its save finished"):
        write_manifest(str(tmp_path / "step_1"))


def test_describe_differences_golden():
    expected = {
        "params/Dense_0/kernel": ((784, 256), "float32"),
        "params/Dense_0/bias": ((256,), "float32"),
        "params/Dense_2/kernel": ((256, 10), "float32"),
        "batch_stats/mean": ((256,), "float32"),
    }
    assert describe_differences(dict(expected), expected) is None
    assert describe_differences({k: (list(s), d) for k, (s, d) in expected.items()}, expected) is None

    saved = {
        "params/Dense_0/kernel": ((784, 128), "float32"),
        "params/Dense_0/bias": ((256,), "bfloat16"),
        "params/Dense_9/bias": ((10,), "float32"),
        "batch_stats/mean": ((256,), "float32"),
    }
    assert describe_differences(saved, expected) == (
        "4 leaves differ: missing from the checkpoint: params/Dense_2/kernel; not expected: params/Dense_9/bias; "
        "shape differs: params/Dense_0/kernel is (784, 128) in the checkpoint, (784, 256) expected; "
        "dtype differs: params/Dense_0/bias is bfloat16 in the checkpoint, float32 expected"
    )
    assert describe_differences({}, {"w": ((), "int32")}) == "1 leaf differs: missing from the checkpoint: w"
    # A leaf differing in both shape and dtype is counted once.
    assert describe_differences({"w": ((2,), "int8")}, {"w": ((3,), "int32")}) == (
        "1 leaf differs: shape differs: w is (2,) in the checkpoint, (3,) expected; "
        "dtype differs: w is int8 in the checkpoint, int32 expected"
    )


def test_describe_differences_names_at_most_five_per_kind():
    expected = {f"params/Dense_{i}/kernel": ((4, 4), "float32") for i in range(8)}
    assert describe_differences({}, expected) == (
        "8 leaves differ: missing from the checkpoint: params/Dense_0/kernel, params/Dense_1/kernel, "
        "params/Dense_2/kernel, params/Dense_3/kernel, params/Dense_4/kernel and 3 more"
    )


def test_leaf_signatures_of_a_flax_like_tree():
    variables = {
        "params": {
            "Conv_0": {"kernel": jnp.zeros((3, 3, 1, 32)), "bias": np.zeros(32, np.float32)},
            "Dense_0": {"kernel": jnp.zeros((128, 10), jnp.bfloat16)},
        },
        "batch_stats": {"BatchNorm_0": {"mean": np.zeros(32, np.float64)}},
        "opt": [jnp.int32(0), (np.ones(2, np.int8),)],
        "step": 7,
    }
    assert leaf_signatures(variables) == {
        "params/Conv_0/kernel": ((3, 3, 1, 32), "float32"),
        "params/Conv_0/bias": ((32,), "float32"),
        "params/Dense_0/kernel": ((128, 10), "bfloat16"),
        "batch_stats/BatchNorm_0/mean": ((32,), "float64"),
        "opt/0": ((), "int32"),
        "opt/1/0": ((2,), "int8"),
        "step": ((), str(np.asarray(7).dtype)),
    }


def test_leaf_signatures_of_shape_dtype_structs_matches_the_arrays():
    arrays = {"params": {"Dense_0": {"kernel": jnp.ones((5, 2)), "bias": jnp.ones((2,), jnp.float16)}}}
    structs = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), arrays)
    assert leaf_signatures(structs) == {
        "params/Dense_0/kernel": ((5, 2), "float32"),
        "params/Dense_0/bias": ((2,), "float16"),
    }
    assert describe_differences(leaf_signatures(structs), leaf_signatures(arrays)) is None


def test_key_name_covers_every_key_entry_kind():
    tree_util = jax.tree_util
    assert integrity._key_name(tree_util.DictKey("kernel")) == "kernel"
    assert integrity._key_name(tree_util.GetAttrKey("params")) == "params"
    assert integrity._key_name(tree_util.SequenceKey(2)) == "2"
    assert integrity._key_name(tree_util.FlattenedIndexKey(4)) == "4"


def test_a_real_orbax_checkpoint(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    path = str(tmp_path / "step_1")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, {"w": np.arange(1000, dtype=np.float32)})
    write_manifest(path)
    verify_manifest(path)

    with ocp.StandardCheckpointer() as checkpointer:
        saved = leaf_signatures(checkpointer.metadata(path).item_metadata)
    assert saved == {"w": ((1000,), "float32")}
    assert describe_differences(saved, {"w": ((1000,), "float16")}) == (
        "1 leaf differs: dtype differs: w is float32 in the checkpoint, float16 expected"
    )

    files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names if name != MANIFEST]
    largest = max(files, key=os.path.getsize)
    flip(largest, offset=os.path.getsize(largest) // 2)
    with pytest.raises(CorruptCheckpointError, match="does not match its sha256") as error:
        verify_manifest(path)
    assert largest in str(error.value)
