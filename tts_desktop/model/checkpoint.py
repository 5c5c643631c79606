"""Read PyTorch checkpoint files without torch and without running anything from them.

A `.pt` file is a pickle, and unpickling normally imports and calls whatever the file names:
that is how a checkpoint can run `os.system`. Here every global the pickle names goes through an
allow-list (`_SafeUnpickler.find_class`): tensor rebuild functions and storage types become our own
NumPy functions, torch.nn and NVIDIA model classes become inert `PickledObject` records that only
hold their pickled state, and anything else stops the load with a `CheckpointError`.

Two containers exist:
- zip (torch >= 1.6): `<name>/data.pkl` plus one entry `<name>/data/<key>` of raw bytes per storage,
  and `<name>/byteorder`.
- legacy: five pickles in a row (magic number, protocol version, system info, the object, the list
  of storage keys) followed by each storage as an int64 element count and its raw bytes.

Tensors come back as `numpy.ndarray` views of their storage's bytes (tensors that share a storage
in torch share memory here too), with torch's dtype except bfloat16, which NumPy lacks: it is
widened to float32 exactly.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["CheckpointError", "PickledObject", "read_checkpoint"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_MAX_TENSOR_DIMS = 32


class CheckpointError(Exception):
    """A file that cannot be read as a checkpoint: corrupt, truncated, foreign or hostile."""


class PickledObject:
    """The inert stand-in for a pickled class instance (a torch.nn module, NVIDIA's WaveGlow, ...).

    It keeps what the pickle gave, and nothing of the real class ever runs: `state` is the dict
    that the real `__setstate__` would have received (for a torch module: `_parameters`,
    `_buffers`, `_modules`, `_forward_pre_hooks`, ...), `args` the constructor arguments.
    Subclasses are made per pickled class name, so `pickled_class` says what it stood for.
    """

    pickled_class = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args = args
        obj.state = {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        # A (dict, slots) pair is what pickle passes for classes with __slots__.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.state = state if isinstance(state, dict) else {"state": state}

    def __repr__(self):
        return f"<pickled {self.pickled_class}>"


# ---------------------------------------------------------------------------------------------
# dtypes


class _StorageType:
    """What `torch.FloatStorage` & co. become: only the element dtype they stand for."""

    def __init__(self, torch_name: str, dtype_name: str):
        self.torch_name = torch_name
        self.dtype_name = dtype_name

    def __repr__(self):
        return f"<storage type {self.torch_name}>"


class _TorchDtype:
    """What `torch.float32` & co. become (they appear as arguments of _rebuild_tensor_v3)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


# torch dtype name -> NumPy dtype name; "bfloat16" is handled by hand (NumPy has no bfloat16).
_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64", "complex128": "complex128", "cdouble": "complex128",
}

_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}


def _itemsize(dtype_name: str) -> int:
    return 2 if dtype_name == "bfloat16" else np.dtype(dtype_name).itemsize


# ---------------------------------------------------------------------------------------------
# storages and tensors


class _Storage:
    """The raw bytes of one torch storage, with the dtype it was saved as."""

    def __init__(self, data: memoryview | bytearray | bytes | None, dtype_name: str, little_endian: bool):
        self.data = data  # None while only the pickle's structure is being read (legacy pass 1)
        self.dtype_name = dtype_name
        self.little_endian = little_endian


def _tensor_from_storage(storage: _Storage, offset, size, stride, dtype_name: str) -> np.ndarray | None:
    """A strided view of the storage's bytes, bounds-checked first: nothing outside it is read."""
    if storage.data is None:
        return None
    size, stride = tuple(size), tuple(stride)
    if not isinstance(offset, int) or not all(isinstance(v, int) for v in size + stride):
        raise CheckpointError("a tensor has a non-integer size, stride or offset")
    if len(size) != len(stride) or len(size) > _MAX_TENSOR_DIMS:
        raise CheckpointError(f"a tensor has an impossible shape {size} with strides {stride}")
    if offset < 0 or any(v < 0 for v in size + stride):
        raise CheckpointError(f"a tensor has a negative size, stride or offset ({size}, {stride}, {offset})")
    itemsize = _itemsize(dtype_name)
    nbytes = len(storage.data)
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if (last + 1) * itemsize > nbytes:
            raise CheckpointError(
                f"a tensor of shape {size} reaches byte {(last + 1) * itemsize} of a {nbytes}-byte storage")
    if dtype_name == "bfloat16":
        raw_dtype = np.dtype("<u2" if storage.little_endian else ">u2")
    else:
        raw_dtype = np.dtype(dtype_name).newbyteorder("<" if storage.little_endian else ">")
    start = offset * itemsize if 0 not in size else 0
    usable = (nbytes - start) // itemsize * itemsize if start < nbytes else 0
    base = np.frombuffer(storage.data, dtype=raw_dtype, count=usable // itemsize, offset=min(start, nbytes))
    view = np.lib.stride_tricks.as_strided(
        base, shape=size, strides=tuple(s * itemsize for s in stride))
    if dtype_name == "bfloat16":
        # bfloat16 is the top half of a float32: shift it into place, exactly.
        widened = view.astype(np.uint32)
        widened <<= 16  # in place, so a 0-d tensor stays an array
        return widened.view(np.float32)
    if not raw_dtype.isnative:
        return view.astype(raw_dtype.newbyteorder("="))
    return view


# ---------------------------------------------------------------------------------------------
# the allow-list


def _latin1_encode(text, encoding="latin1"):
    """Protocol 2 pickles bytes as `_codecs.encode(text, 'latin1')`; only that codec is honoured."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise CheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _passthrough_first(data, *_ignored):
    """torch.nn.Parameter and its rebuild functions: the tensor itself is all that matters here."""
    return data


_MODEL_CLASS_MODULES = (
    "torch.nn.modules.",          # Conv1d, ModuleList, LSTM, BatchNorm1d, ...
    "torch.nn.parallel.",         # DataParallel / DistributedDataParallel wrappers
)
# NVIDIA's own model modules: DeepLearningExamples (waveglow.model, tacotron2.model) and the
# original NVIDIA/waveglow and NVIDIA/tacotron2 repositories (glow, glow_old, model).
_NVIDIA_MODEL_MODULES = {"glow", "glow_old", "waveglow.model", "tacotron2.model", "model", "models",
                         "layers", "waveglow.denoiser", "denoiser"}
_OTHER_RECORD_CLASSES = {
    ("torch.nn.utils.weight_norm", "WeightNorm"),
    ("argparse", "Namespace"),
}
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# Only constructors whose memory use is bounded by the pickle's own size (no bytearray(10**12)).
_BUILTINS = {"set": set, "frozenset": frozenset}


class _TensorType:
    """What torch.Tensor becomes: it only appears as the `new_type` of _rebuild_from_type_v2."""

    def __repr__(self):
        return "torch.Tensor"


_TENSOR_TYPE = _TensorType()


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only from the allow-list above."""

    def __init__(self, file, source: Path, persistent_load: Callable[[Any], Any] | None = None):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._persistent = persistent_load
        self._record_classes: dict[tuple[str, str], type] = {}

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(f"'{self._source.name}' has a storage reference where none belongs")
        return self._persistent(pid)

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)
        found = self._allowed(module, name)
        if found is None:
            raise CheckpointError(
                f"refusing to load '{self._source.name}': it references {module}.{name}, "
                "which is not a tensor or model class")
        return found

    def _allowed(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            return getattr(self, name)
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _passthrough_first
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return self._rebuild_from_type_v2
        if module in ("torch", "torch._tensor") and name == "Tensor":
            return _TENSOR_TYPE
        if module in ("torch.nn.parameter", "torch.nn") and name == "Parameter":
            return _passthrough_first
        if module == "torch" and name in _STORAGE_TYPES or (module, name) == ("torch.storage", "UntypedStorage"):
            return _StorageType(name, _STORAGE_TYPES[name])
        if module == "torch" and (name in _DTYPES or name.startswith(("float8", "uint", "int", "bits"))):
            return _TorchDtype(name)  # dtypes NumPy lacks are refused when a tensor uses them
        if module == "torch" and name == "Size":
            return tuple
        if module == "torch" and name == "device":
            return str
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if (name.isidentifier() and (module.startswith(_MODEL_CLASS_MODULES) or module in _NVIDIA_MODEL_MODULES)
                or (module, name) in _OTHER_RECORD_CLASSES):
            return self._record_class(module, name)
        return None

    def _record_class(self, module: str, name: str) -> type:
        key = (module, name)
        if key not in self._record_classes:
            self._record_classes[key] = type(name, (PickledObject,), {"pickled_class": f"{module}.{name}"})
        return self._record_classes[key]

    # torch's tensor rebuild functions, re-done on NumPy

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._tensor(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks,
                           dtype, metadata=None):
        if not isinstance(dtype, _TorchDtype) or dtype.name not in _DTYPES:
            raise CheckpointError(f"'{self._source.name}' has a tensor of unsupported dtype {_short(dtype)}")
        return self._tensor(storage, storage_offset, size, stride, _DTYPES[dtype.name])

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        if func not in (self._rebuild_tensor, self._rebuild_tensor_v2, self._rebuild_tensor_v3) \
                or new_type not in (_TENSOR_TYPE, _passthrough_first):
            raise CheckpointError(f"'{self._source.name}' rebuilds a tensor of an unsupported type")
        return func(*args)

    def _tensor(self, storage, offset, size, stride, dtype_name):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"'{self._source.name}' builds a tensor from {type(storage).__name__}, not a storage")
        try:
            return _tensor_from_storage(storage, offset, size, stride, dtype_name or storage.dtype_name)
        except CheckpointError as err:
            raise CheckpointError(f"'{self._source.name}': {err}") from None


# ---------------------------------------------------------------------------------------------
# containers


class _MemoryReader:
    """A file-like reader over bytes for the unpickler, so every read is bounded by the file size
    and the position after a pickle is exact (legacy files put raw bytes after their pickles)."""

    def __init__(self, data: bytes | bytearray, pos: int = 0):
        self._data = data
        self._view = memoryview(data)
        self.pos = pos

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n is None or n < 0 else min(self.pos + n, len(self._data))
        chunk = bytes(self._view[self.pos:end])
        self.pos = end
        return chunk

    def readline(self) -> bytes:
        newline = self._data.find(b"\n", self.pos)
        return self.read((len(self._data) if newline < 0 else newline + 1) - self.pos)


def _storage_spec(pid, source: Path):
    """Check a persistent id ('storage', storage_type, key, location, numel[, view]) and unpack it."""
    if not isinstance(pid, tuple) or len(pid) < 5:
        raise CheckpointError(f"'{source.name}' has a malformed storage reference {_short(pid)}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if kind != "storage" or not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"'{source.name}' has a malformed storage reference {_short(pid)}")
    if not isinstance(numel, int) or numel < 0:
        raise CheckpointError(f"'{source.name}' has a storage of {_short(numel)} elements")
    key = key.decode("ascii") if isinstance(key, bytes) else str(key)
    return storage_type.dtype_name, key, numel


def _module_class_reference(pid):
    """Legacy files of whole modules save each module class as ('module', class, file, source);
    the class is already an inert record class (or refused) by then, the source is ignored."""
    if isinstance(pid, tuple) and len(pid) == 4 and pid[0] in ("module", b"module") \
            and isinstance(pid[1], type) and issubclass(pid[1], PickledObject):
        return pid[1]
    return None


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_zip(path: Path, zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pickles:
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            raise CheckpointError(
                f"'{path.name}' is a TorchScript archive (torch.jit.save), not a checkpoint; "
                "save the model's state_dict with torch.save instead")
        raise CheckpointError(f"'{path.name}' is a zip file without data.pkl: not a PyTorch checkpoint")
    prefix = pickles[0][: -len("data.pkl")]
    little_endian = True
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").strip()
        if order not in (b"little", b"big"):
            raise CheckpointError(f"'{path.name}' has an unknown byte order {order!r}")
        little_endian = order == b"little"

    storages: dict[str, _Storage] = {}

    def load_storage(pid):
        dtype_name, key, numel = _storage_spec(pid, path)
        if key not in storages:
            entry_name = f"{prefix}data/{key}"
            try:
                entry = zf.getinfo(entry_name)
            except KeyError:
                raise CheckpointError(f"'{path.name}' lacks the storage {entry_name}") from None
            needed = numel * _itemsize(dtype_name)
            if needed > entry.file_size:
                raise CheckpointError(
                    f"'{path.name}': storage {key} claims {needed} bytes but holds {entry.file_size}")
            if entry.compress_type != zipfile.ZIP_STORED and entry.file_size > 1024 * max(entry.compress_size, 1):
                raise CheckpointError(f"'{path.name}': storage {key} expands absurdly ({entry.compress_size} "
                                      f"-> {entry.file_size} bytes)")
            buffer = bytearray(entry.file_size)
            with zf.open(entry) as stream:
                got = stream.readinto(buffer)
                # the CRC is only checked once the stream sees its end
                if got != entry.file_size or stream.read(1):
                    raise CheckpointError(f"'{path.name}': storage {key} is truncated")
            storages[key] = _Storage(memoryview(buffer), dtype_name, little_endian)
        return storages[key]

    data = zf.read(pickles[0])
    return _SafeUnpickler(_MemoryReader(data), path, load_storage).load()


def _read_legacy(path: Path, buffer: bytearray) -> Any:
    data = memoryview(buffer)  # storages become zero-copy slices of the file's bytes
    reader = _MemoryReader(buffer)
    magic = _SafeUnpickler(reader, path).load()
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"'{path.name}' is a pickle but not a PyTorch checkpoint (no magic number)")
    protocol = _SafeUnpickler(reader, path).load()
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"'{path.name}' has legacy protocol version {protocol!r}, expected 1001")
    sys_info = _SafeUnpickler(reader, path).load()
    little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    object_start = reader.pos

    # Pass 1 reads the object's structure only, to learn each storage's dtype and element count:
    # the storages' bytes follow the object in the file, in the order of the key list after it.
    specs: dict[str, tuple[str, int]] = {}

    def note_storage(pid):
        module_class = _module_class_reference(pid)
        if module_class is not None:
            return module_class
        dtype_name, key, numel = _storage_spec(pid, path)
        specs.setdefault(key, (dtype_name, numel))
        return _Storage(None, dtype_name, little_endian)

    _SafeUnpickler(reader, path, note_storage).load()
    keys = _SafeUnpickler(reader, path).load()
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise CheckpointError(f"'{path.name}' has a malformed storage key list")

    roots: dict[str, _Storage] = {}
    pos = reader.pos
    header = np.dtype("<i8" if little_endian else ">i8")
    for raw_key in keys:
        key = raw_key.decode("ascii") if isinstance(raw_key, bytes) else raw_key
        if key not in specs:
            raise CheckpointError(f"'{path.name}' lists storage {key} that no tensor uses")
        dtype_name, numel = specs[key]
        if pos + 8 > len(data):
            raise CheckpointError(f"'{path.name}' is truncated: storage {key} is missing")
        count = int(np.frombuffer(data[pos:pos + 8], dtype=header)[0])
        nbytes = count * _itemsize(dtype_name)
        if count < numel or pos + 8 + nbytes > len(data):
            raise CheckpointError(
                f"'{path.name}' is truncated or corrupt: storage {key} claims {nbytes} bytes, "
                f"{len(data) - pos - 8} remain")
        roots[key] = _Storage(data[pos + 8:pos + 8 + nbytes], dtype_name, little_endian)
        pos += 8 + nbytes

    views: dict[str, _Storage] = {}

    def load_storage(pid):
        module_class = _module_class_reference(pid)
        if module_class is not None:
            return module_class
        dtype_name, key, _numel = _storage_spec(pid, path)
        if key not in roots:
            raise CheckpointError(f"'{path.name}' has no bytes for storage {key}")
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return roots[key]
        # Storage views (torch < 1.0): (view key, offset, size) in elements of the root's dtype.
        if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
            raise CheckpointError(f"'{path.name}' has a malformed storage view {_short(view)}")
        view_key, offset, size = view
        if view_key not in views:
            itemsize = _itemsize(roots[key].dtype_name)
            if offset < 0 or size < 0 or (offset + size) * itemsize > len(roots[key].data):
                raise CheckpointError(f"'{path.name}' has a storage view outside its storage")
            views[view_key] = _Storage(roots[key].data[offset * itemsize:(offset + size) * itemsize],
                                       roots[key].dtype_name, little_endian)
        return views[view_key]

    return _SafeUnpickler(_MemoryReader(buffer, object_start), path, load_storage).load()


def read_checkpoint(path) -> Any:
    """The object saved in a PyTorch checkpoint file, tensors as NumPy arrays.

    Raises CheckpointError for anything that is not a readable checkpoint, naming the file, and
    for any global outside the allow-list, naming it. Nothing in the file is imported or run.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _read_zip(path, zf)
        with open(path, "rb") as f:
            size = path.stat().st_size
            buffer = bytearray(size)
            if f.readinto(buffer) != size:
                raise CheckpointError(f"'{path.name}' changed while being read")
        if size == 0:
            raise CheckpointError(f"'{path.name}' is empty")
        if buffer[:1] != b"\x80":
            import tarfile

            if tarfile.is_tarfile(path):
                raise CheckpointError(f"'{path.name}' uses torch's pre-1.0 tar format, which is not supported")
            raise CheckpointError(f"'{path.name}' is not a PyTorch checkpoint (neither a zip nor a pickle)")
        return _read_legacy(path, buffer)
    except CheckpointError:
        raise
    except OSError as err:
        raise CheckpointError(f"cannot read '{path.name}': {err.strerror or err}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise CheckpointError(f"'{path.name}' is truncated or corrupt: {err}") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            OverflowError, RecursionError, MemoryError, UnicodeDecodeError) as err:
        raise CheckpointError(f"'{path.name}' is corrupt or not a PyTorch checkpoint: "
                              f"{type(err).__name__}: {err}") from None
