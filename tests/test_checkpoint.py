"""read_checkpoint: torch's zip and legacy containers read without torch, hostile files refused."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tts_desktop.model.checkpoint import CheckpointError, PickledObject, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
GOLDEN_FILES = ["tacotron2_dle.pt", "tacotron2_legacy.pt", "waveglow_dle.pt", "waveglow_pickled.pt"]


# ---------------------------------------------------------------------------------------------
# NVIDIA's golden files


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_every_golden_file_reads(golden_dir, name):
    obj = read_checkpoint(golden_dir / name)
    assert isinstance(obj, dict) and obj


def test_zip_and_legacy_tacotron2_hold_the_same_tensors(golden_dir):
    zipped = read_checkpoint(golden_dir / "tacotron2_dle.pt")
    legacy = read_checkpoint(golden_dir / "tacotron2_legacy.pt")
    assert zipped["epoch"] == 6000 and zipped["config"]["attention_rnn_dim"] == 96
    state = {k[len("module."):]: v for k, v in zipped["state_dict"].items()}
    assert isinstance(legacy, OrderedDict)
    assert list(state) == list(legacy)
    for key in state:
        assert state[key].dtype == legacy[key].dtype, key
        np.testing.assert_array_equal(state[key], legacy[key], err_msg=key)
    assert state["embedding.weight"].dtype == np.float32 and state["embedding.weight"].shape == (148, 64)
    assert legacy["encoder.convolutions.0.1.num_batches_tracked"].dtype == np.int64


def test_whole_module_pickle_becomes_inert_records(golden_dir):
    model = read_checkpoint(golden_dir / "waveglow_pickled.pt")["model"]
    assert isinstance(model, PickledObject)
    assert model.pickled_class == "waveglow.model.WaveGlow"
    assert "waveglow" not in sys.modules and "waveglow.model" not in sys.modules
    start = model.state["_modules"]["WN"].state["_modules"]["0"].state["_modules"]["start"]
    assert start.pickled_class == "torch.nn.modules.conv.Conv1d"
    assert set(start.state["_parameters"]) == {"bias", "weight_g", "weight_v"}
    hook = next(iter(start.state["_forward_pre_hooks"].values()))
    assert hook.pickled_class == "torch.nn.utils.weight_norm.WeightNorm"
    assert hook.state == {"name": "weight", "dim": 0}


def test_reading_does_not_import_torch(golden_dir):
    code = (
        "import sys\n"
        "from tts_desktop.model import checkpoint, importer, voice_files\n"
        f"for name in {GOLDEN_FILES!r}:\n"
        f"    checkpoint.read_checkpoint({str(golden_dir)!r} + '/' + name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------------
# files written by real torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _sample_tensors(torch, dtype):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10).to(dtype) / 7
    weight = torch.nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).to(dtype))
    return {
        "base": base,
        "transposed": base.t(),                 # strides (1, 10) on the same storage
        "offset": base[2:, 3:7],                # storage offset 23
        "strided": base[::2, ::3],
        "row": base[4],
        "scalar": torch.tensor(2.5, dtype=dtype),
        "empty": torch.zeros(0, 3, dtype=dtype),
        "param": weight,
        "ints": torch.arange(-3, 4),
        "flags": torch.tensor([True, False]),
        "nested": [(base[1:3, 1],), {"deep": OrderedDict(a=base[5, ::4])}],
        "shape": torch.Size([2, 3]),
        "note": "text", "number": 3, "blob": b"\x00\x01",
    }


def _assert_same(ours, theirs, torch):
    if isinstance(theirs, torch.Tensor):
        expected = theirs.detach().float().numpy() if theirs.dtype == torch.bfloat16 else theirs.detach().numpy()
        assert isinstance(ours, np.ndarray)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        for key in theirs:
            _assert_same(ours[key], theirs[key], torch)
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _assert_same(a, b, torch)
    else:
        assert ours == theirs


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16", "float64"])
def test_torch_saved_files_read_back_equal(torch, tmp_path, zipped, dtype_name):
    tensors = _sample_tensors(torch, getattr(torch, dtype_name))
    tensors["tagged"] = torch.ones(3)
    tensors["tagged"].note = "an attribute makes torch pickle it through _rebuild_from_type_v2"
    tensors["uint16"] = torch.tensor([1, 60000], dtype=torch.int32).to(torch.uint16)  # _rebuild_tensor_v3
    path = tmp_path / "sample.pt"
    torch.save(tensors, path, _use_new_zipfile_serialization=zipped)
    ours = read_checkpoint(path)
    _assert_same(ours, tensors, torch)


def test_numpy_objects_are_not_on_the_allow_list(torch, tmp_path):
    path = tmp_path / "extras.pt"
    torch.save({"best_loss": np.float64(0.25), "w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="references numpy"):
        read_checkpoint(path)


def test_views_share_memory_like_torch(torch, tmp_path):
    base = torch.arange(12.0)
    path = tmp_path / "shared.pt"
    torch.save({"a": base, "b": base[4:8]}, path)
    ours = read_checkpoint(path)
    assert np.shares_memory(ours["a"], ours["b"])


def test_whole_torch_module_is_read_as_records(torch, tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 5), torch.nn.BatchNorm1d(3))
    path = tmp_path / "module.pt"
    torch.save({"model": module}, path, _use_new_zipfile_serialization=False)
    record = read_checkpoint(path)["model"]
    conv = record.state["_modules"]["0"]
    assert conv.pickled_class == "torch.nn.modules.conv.Conv1d"
    np.testing.assert_array_equal(conv.state["_parameters"]["weight"], module[0].weight.detach().numpy())
    batchnorm = record.state["_modules"]["1"]
    np.testing.assert_array_equal(batchnorm.state["_buffers"]["running_var"], np.ones(3, np.float32))


# ---------------------------------------------------------------------------------------------
# hostile files: nothing in them may run


class _RunsCommand:
    """Unpickling this runs a shell command that creates `sentinel`."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        command = f'"{sys.executable}" -c "open(r\'{self.sentinel}\', \'w\').close()"'
        return (os.system, (command,))


class _OpensFile:
    """Unpickling this calls open(sentinel, 'w') (pickled as io.open), creating it."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


def test_the_hostile_payload_really_runs_when_unpickled_normally(tmp_path):
    # Guards the tests below: the payload is live, so its absence there means it was refused.
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(_RunsCommand(sentinel), protocol=2))
    assert sentinel.exists()


@pytest.mark.parametrize("container", ["zip", "legacy", "plain pickle"])
@pytest.mark.parametrize("payload", [_RunsCommand, _OpensFile])
def test_hostile_pickles_are_refused_and_never_run(torch, tmp_path, container, payload):
    sentinel = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    obj = {"state_dict": {"weight": torch.ones(2)}, "extra": [payload(sentinel)]}
    if container == "plain pickle":
        path.write_bytes(pickle.dumps(payload(sentinel), protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=(container == "zip"))
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    message = str(raised.value)
    assert "refusing to load 'evil.pt'" in message
    assert ("system" in message) if payload is _RunsCommand else ("io.open" in message)
    assert not sentinel.exists()


# ---------------------------------------------------------------------------------------------
# hand-made pickles, to reach the checks that torch itself never trips


def _ops(value) -> bytes:
    """The pickle opcodes that push `value` (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor_pickle(size, stride, offset=0, numel=4, storage_type=("torch", "FloatStorage"),
                   rebuild=("torch._utils", "_rebuild_tensor_v2")) -> bytes:
    storage_id = b"(" + _ops("storage") + _global(*storage_type) + _ops("0") + _ops("cpu") + _ops(numel) + b"tQ"
    hooks = _global("collections", "OrderedDict") + b")R"
    args = b"(" + storage_id + _ops(offset) + _ops(tuple(size)) + _ops(tuple(stride)) + _ops(False) + hooks + b"t"
    return b"\x80\x02" + _global(*rebuild) + args + b"R."


FOUR_FLOATS = np.arange(4, dtype="<f4").tobytes()


def _write_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], byteorder=b"little") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def _write_legacy(path: Path, data_pkl: bytes, storages: dict[str, tuple[int, bytes]]) -> Path:
    header = b"".join(pickle.dumps(v, protocol=2) for v in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    tail = b"".join(np.int64(count).tobytes() + raw for count, raw in storages.values())
    path.write_bytes(header + data_pkl + pickle.dumps(list(storages), protocol=2) + tail)
    return path


@pytest.mark.parametrize("write", ["zip", "legacy"])
def test_hand_made_tensor_reads(tmp_path, write):
    pkl = _tensor_pickle((2, 2), (1, 2), offset=0)
    if write == "zip":
        path = _write_zip(tmp_path / "t.pt", pkl, {"0": FOUR_FLOATS})
    else:
        path = _write_legacy(tmp_path / "t.pt", pkl, {"0": (4, FOUR_FLOATS)})
    np.testing.assert_array_equal(read_checkpoint(path), np.array([[0, 2], [1, 3]], np.float32))


def test_big_endian_storage_is_swapped(tmp_path):
    path = _write_zip(tmp_path / "be.pt", _tensor_pickle((4,), (1,)), {"0": np.arange(4, dtype=">f4").tobytes()},
                      byteorder=b"big")
    tensor = read_checkpoint(path)
    assert tensor.dtype == np.float32 and tensor.dtype.isnative
    np.testing.assert_array_equal(tensor, np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("size, stride, offset, numel, expected", [
    ((3, 2), (2, 1), 0, 4, "reaches byte"),           # reads past the storage
    ((2,), (1,), 3, 4, "reaches byte"),               # offset pushes it past the end
    ((2, 2), (-1, 1), 2, 4, "negative"),
    ((2,), (1,), 0, 400, "claims 1600 bytes"),        # storage bigger than its zip entry
])
def test_tensors_outside_their_storage_are_refused(tmp_path, size, stride, offset, numel, expected):
    path = _write_zip(tmp_path / "bad.pt", _tensor_pickle(size, stride, offset, numel), {"0": FOUR_FLOATS})
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(path)


@pytest.mark.parametrize("storage_type, rebuild, named", [
    (("os", "system"), ("torch._utils", "_rebuild_tensor_v2"), "os.system"),
    (("torch", "FloatStorage"), ("builtins", "eval"), "builtins.eval"),
    (("torch", "FloatStorage"), ("__builtin__", "getattr"), "builtins.getattr"),
    (("torch", "FloatStorage"), ("torch", "load"), "torch.load"),
    (("torch", "FloatStorage"), ("torch.nn.modules.conv", "os.system"), "torch.nn.modules.conv.os.system"),
])
def test_globals_outside_the_allow_list_are_named(tmp_path, storage_type, rebuild, named):
    pkl = _tensor_pickle((4,), (1,), storage_type=storage_type, rebuild=rebuild)
    path = _write_zip(tmp_path / "globals.pt", pkl, {"0": FOUR_FLOATS})
    with pytest.raises(CheckpointError, match=f"refusing to load 'globals.pt': it references {named}"):
        read_checkpoint(path)


def test_legacy_storage_claiming_more_than_the_file_is_refused(tmp_path):
    path = _write_legacy(tmp_path / "huge.pt", _tensor_pickle((4,), (1,)), {"0": (1 << 40, FOUR_FLOATS)})
    with pytest.raises(CheckpointError, match="claims"):
        read_checkpoint(path)


def test_missing_zip_storage_is_refused(tmp_path):
    path = _write_zip(tmp_path / "nostorage.pt", _tensor_pickle((4,), (1,)), {})
    with pytest.raises(CheckpointError, match="lacks the storage archive/data/0"):
        read_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# broken and foreign files


@pytest.mark.parametrize("name", ["tacotron2_dle.pt", "tacotron2_legacy.pt"])
@pytest.mark.parametrize("fraction", [0.0005, 0.004, 0.3, 0.5, 0.9, 0.9999])
def test_truncated_files_are_refused(golden_dir, tmp_path, name, fraction):
    data = (golden_dir / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=name):
        read_checkpoint(cut)


def test_corrupt_zip_storage_is_refused(golden_dir, tmp_path):
    data = bytearray((golden_dir / "tacotron2_dle.pt").read_bytes())
    with zipfile.ZipFile(golden_dir / "tacotron2_dle.pt") as zf:
        entry = zf.getinfo("tacotron2_dle/data/1")
    data[entry.header_offset + 200] ^= 0xFF  # inside the storage's bytes: the CRC no longer matches
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt"):
        read_checkpoint(path)


@pytest.mark.parametrize("content, expected", [
    (b"", "empty"),
    (np.random.default_rng(0).bytes(4096), "not a PyTorch checkpoint"),
    (b"\x80" + np.random.default_rng(1).bytes(4096), "flat.pt"),
    (pickle.dumps({"weights": [1, 2]}, protocol=2), "no magic number"),
    (b"hello, this is text\n", "not a PyTorch checkpoint"),
])
def test_foreign_files_are_refused(tmp_path, content, expected):
    path = tmp_path / "flat.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(path)


def test_zip_without_data_pkl_is_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    with pytest.raises(CheckpointError, match="without data.pkl"):
        read_checkpoint(path)


def test_torchscript_archive_is_named(tmp_path):
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("scripted/constants.pkl", b"\x80\x02].")
        zf.writestr("scripted/code/__torch__.py", "")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(path)


def test_folders_and_missing_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nowhere.pt")


def test_dtypes_numpy_lacks_are_refused_by_name(torch, tmp_path):
    path = tmp_path / "f8.pt"
    torch.save({"w": torch.ones(2).to(torch.float8_e4m3fn)}, path)
    with pytest.raises(CheckpointError, match="unsupported dtype torch.float8_e4m3fn"):
        read_checkpoint(path)
