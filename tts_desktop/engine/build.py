"""The GPU engine of one voice, built once and cached: packed weights + compiled kernels + a manifest.

Building means: repacking the voice's weights into the layouts the kernels read (float64 algebra:
BatchNorm folded into convolutions, WaveGlow's skip path folded into `end`, inverse 1x1 convs,
the denoiser's STFT bases — a 1026 x 1024 pseudo-inverse), rounding to FP16 where the FP16
engine keeps a tensor in half precision, and NVRTC-compiling every kernel module the stages ask
for into a cubin for the GPU's architecture. That costs tens of seconds; loading the result takes
a fraction of one, so it is done once per key:

    voice (sha256 of the weight files, or of the arrays for an in-memory voice; `tree_sha256`), GPU name and
    architecture, precision, TF32 (the FP32 engine's WaveGlow GEMMs on TF32 tensor cores: the same
    packed weights and cubins, but another numeric contract, so never loaded for a strict request),
    max batch, kernel sources (compile.kernel_source_hash), the engine's own Python code (the
    packing lives there), the package version and this file format.

On disk (no pickle anywhere: safetensors for arrays, JSON for everything else):

    <cache>/<voice>-<precision>[-tf32]-<arch>-<key digest[:16]>/
        manifest.json                 the key, the payload's name, size and checksum, the structure
        payload-<checksum[:16]>.safetensors   every array and every cubin (as uint8)

Checksums are `tree_sha256`: sha256 over the sha256 of each 8 MiB leaf, the leaves hashed in
parallel threads (a full-size voice plus its engine is ~700 MB to hash at every load).

The payload is written first, the manifest last (both atomically), so the manifest is the commit
point; a payload is named after its own checksum, so two processes building the same engine never
overwrite each other's payload under one name. A manifest whose key differs from the expected one,
a missing or truncated payload, or one whose checksum does not match is reported and rebuilt,
never used. Where the cache folder cannot be written, the engine is used from memory.

Which kernel modules the stages compile (sources + -D defines) is learnt by constructing the very
stage classes the pipeline uses against a recording stand-in for the GPU context (`_PlanContext`),
so the build needs no GPU (CI compiles for sm_90 on a CPU machine) and cannot drift from what the
stages ask for at run time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import __version__
from ..model.config import AudioConfig, Tacotron2Config, VoiceConfig, WaveGlowConfig
from .compile import compile_cuda, kernel_source_hash
from .conv1d import ConvLayer
from .encoder import PackedEncoder
from .postnet import PackedPostnet
from .runtime import arch_cc, max_shared_per_block
from .waveglow import PackedWaveGlow

FORMAT = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp16", "fp32")
_PKG = Path(__file__).resolve().parents[1]  # tts_desktop/
_HASH_CHUNK = 8 << 20  # tree-hash leaf size
_HASH_THREADS = max(1, min(8, os.cpu_count() or 1))

Progress = Callable[[float, str], None]


class EngineError(RuntimeError):
    """An engine file that cannot be used (wrong key, truncated, checksum mismatch, unreadable)."""


# --------------------------------------------------------------------------------------- cache dir


def default_cache_dir() -> Path:
    """`$TTS_DESKTOP_ENGINES`, else `engines/` of the repository when running from a writable
    checkout, else `$XDG_CACHE_HOME/tts-desktop/engines` (~/.cache/tts-desktop/engines)."""
    env = os.environ.get("TTS_DESKTOP_ENGINES")
    if env:
        return Path(env)
    repo = _PKG.parent
    if (repo / "pyproject.toml").is_file() and (repo / "kernels").is_dir():
        target = repo / "engines"
        if os.access(target if target.is_dir() else repo, os.W_OK):
            return target
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tts-desktop" / "engines"


# --------------------------------------------------------------------------------------- the key


def tree_sha256(buffers) -> str:
    """sha256 over the sha256 digests of every 8 MiB leaf of `buffers` (each buffer's length
    included): the leaves hash side by side in threads (hashlib releases the GIL), so the ~700 MB
    a full-size voice and its engine come to verify in a fraction of a second instead of ~1 s."""
    views = [memoryview(b).cast("B") for b in buffers]
    leaves = [v[i: i + _HASH_CHUNK] for v in views for i in range(0, len(v), _HASH_CHUNK)]
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        digests = list(pool.map(lambda leaf: hashlib.sha256(leaf).digest(), leaves))
    h = hashlib.sha256(b"tree-sha256/8MiB\0")
    for v in views:
        h.update(len(v).to_bytes(8, "little"))
    h.update(b"".join(digests))
    return h.hexdigest()


def _tree_sha256_file(path: Path) -> str:
    import mmap

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return tree_sha256([b""])
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return tree_sha256([m])


def voice_hash(path: Path | None, config: VoiceConfig, tacotron2_weights: Mapping[str, np.ndarray],
               waveglow_weights: Mapping[str, np.ndarray]) -> str:
    """sha256 of the voice folder's three files (names and per-file digests), or, for a voice that
    exists only in memory (path None, e.g. the benchmark's random weights), of its config JSON and
    every array's name, dtype, shape and bytes."""
    from ..model.voice_files import TACOTRON2_FILE, VOICE_JSON, WAVEGLOW_FILE

    h = hashlib.sha256()
    files = [Path(path) / n for n in (VOICE_JSON, TACOTRON2_FILE, WAVEGLOW_FILE)] if path else []
    if files and all(f.is_file() for f in files):
        for f in files:
            h.update(f"{f.name}:{_tree_sha256_file(f)}\n".encode())
        return "files:" + h.hexdigest()
    h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    arrays = []
    for group, weights in (("tacotron2", tacotron2_weights), ("waveglow", waveglow_weights)):
        for name in sorted(weights):
            a = np.ascontiguousarray(weights[name])
            h.update(f"{group}/{name}:{a.dtype.str}:{a.shape}\n".encode())
            arrays.append(a)
    h.update(tree_sha256(arrays).encode())
    return "arrays:" + h.hexdigest()


def engine_code_hash() -> str:
    """sha256 of the engine's Python sources and the config dataclasses: the packed layouts are
    defined there, so an edit must invalidate cached engines even without a version bump."""
    h = hashlib.sha256()
    for p in sorted((_PKG / "engine").glob("*.py")) + [_PKG / "model" / "config.py"]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    voice: str
    gpu_name: str
    arch: str
    precision: str
    max_batch: int
    kernels: str
    engine_code: str
    version: str
    tf32: bool = False  # FP32 engine only: WaveGlow's cuBLAS GEMMs with TF32 tensor cores
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def check_tf32(precision: str, tf32: bool, arch: str | None = None) -> None:
    """TF32 is a mode of the FP32 engine on sm_80+ (Ampere and later): ValueError otherwise."""
    if not tf32:
        return
    if precision != "fp32":
        raise ValueError(f"TF32 applies to the FP32 engine only (precision 'fp32'), not {precision!r}")
    m = re.fullmatch(r"sm_(\d+)[a-z]?", arch or "")
    if arch is not None and m and int(m.group(1)) < 80:
        raise ValueError(f"TF32 tensor cores need sm_80 or newer (Ampere+); this GPU is {arch}")


def make_key(path: Path | None, config: VoiceConfig, tacotron2_weights, waveglow_weights, *, gpu_name: str,
             arch: str, precision: str, max_batch: int, tf32: bool = False) -> EngineKey:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise ValueError(f"arch must look like 'sm_90', got {arch!r}")
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    check_tf32(precision, tf32, arch)
    return EngineKey(voice=voice_hash(path, config, tacotron2_weights, waveglow_weights), gpu_name=gpu_name,
                     arch=arch, precision=precision, max_batch=int(max_batch), kernels=kernel_source_hash(),
                     engine_code=engine_code_hash(), version=__version__, tf32=bool(tf32))


# --------------------------------------------------------------------------------------- packing

# Decoder tensors (NVIDIA names) that the FP16 decoder turns into half precision as they are: stored
# as float16, they pack to the same bits. Biases, the location conv/dense and `v` stay float32
# there (see decoder._WT_KEYS); `_check_decoder_storage` proves the equivalence at build time.
_DEC_HALF = re.compile(r"decoder\.(prenet\.layers\.\d+\.linear_layer\.weight|(attention|decoder)_rnn\.weight_(ih|hh)"
                       r"|attention_layer\.(query|memory)_layer\.linear_layer\.weight"
                       r"|(linear_projection|gate_layer)\.linear_layer\.weight)")


def decoder_storage(tacotron2_weights: Mapping[str, np.ndarray], fp16: bool) -> dict[str, np.ndarray]:
    out = {}
    for k, v in tacotron2_weights.items():
        if k.startswith("decoder."):
            half = fp16 and _DEC_HALF.fullmatch(k) is not None
            out[k] = np.ascontiguousarray(np.asarray(v).astype(np.float16 if half else np.float32))
    return out


def _check_decoder_storage(cfg: Tacotron2Config, original, stored, fp16: bool) -> None:
    """The stored decoder tensors must pack to exactly what the originals pack to on the GPU."""
    from .decoder import _WT_KEYS, pack_decoder_weights

    a, b = pack_decoder_weights(cfg, original), pack_decoder_weights(cfg, stored)
    for n in a:
        dt = np.float16 if (fp16 and n in _WT_KEYS) else np.float32
        if not np.array_equal(a[n].astype(dt), b[n].astype(dt)):
            raise EngineError(f"decoder tensor {n!r} changes when stored as the engine stores it")


def stft_bases(filter_length: int, win_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """denoiser.stft_bases in closed form: (forward (N+2, N), inverse (N+2, N), window**2), float32.

    The pseudo-inverse of the real DFT basis [Re; Im] (N+2 x N) is the irfft matrix (see
    model/stft.py): Re row k is c_k cos(2 pi k n / N) / N, Im row k is -c_k sin(2 pi k n / N) / N,
    c_k = 1 at DC and Nyquist and 2 elsewhere, the Im rows of DC and Nyquist zero. denoiser.py
    gets it from np.linalg.pinv, which costs seconds per build; the two agree to ~1e-14
    (tests/test_engine_cache.py)."""
    from ..model.stft import periodic_window

    n = int(filter_length)
    if n % 2 or not 0 < win_length <= n:
        raise ValueError(f"need an even filter length >= the window length, got {n}, {win_length}")
    cut = n // 2 + 1
    ang = 2 * np.pi * ((np.arange(cut)[:, None] * np.arange(n)[None, :]) % n) / n  # exact phase, no drift
    left = (n - win_length) // 2
    win = np.pad(periodic_window("hann", win_length), (left, n - win_length - left))
    c = np.full((cut, 1), 2.0)
    c[0] = c[-1] = 1.0
    fwd = np.vstack([np.cos(ang), -np.sin(ang)]) * win
    inv = np.vstack([c * np.cos(ang), -c * np.sin(ang)]) / n
    inv[cut] = inv[-1] = 0.0  # the imaginary parts of DC and Nyquist do not come back
    return fwd.astype(np.float32), (inv * win).astype(np.float32), (win**2).astype(np.float32)


def pack(config: VoiceConfig, tacotron2_weights, waveglow_weights, precision: str,
         progress: Progress | None = None) -> dict[str, Any]:
    """Host-side engine parts: {encoder, postnet, decoder, waveglow, denoiser}."""
    fp16 = precision == "fp16"
    say = progress or (lambda f, m: None)
    say(0.0, "packing the encoder")
    enc = PackedEncoder.from_weights(config.tacotron2, tacotron2_weights, fp16)
    say(0.03, "packing the postnet")
    post = PackedPostnet.from_weights(config.tacotron2, tacotron2_weights, fp16)
    say(0.06, "packing the decoder")
    dec = decoder_storage(tacotron2_weights, fp16)
    _check_decoder_storage(config.tacotron2, tacotron2_weights, dec, fp16)
    say(0.08, "packing WaveGlow")
    wg = PackedWaveGlow.from_weights(config.waveglow, waveglow_weights, fp16)
    say(0.35, "computing the denoiser's STFT bases")
    a = config.audio
    fwd, inv, wsq = stft_bases(a.filter_length, a.win_length)
    dn = {"fwd": fwd, "inv": inv, "win_sq": wsq, "filter_length": a.filter_length, "hop_length": a.hop_length}
    return {"encoder": enc, "postnet": post, "decoder": dec, "waveglow": wg, "denoiser": dn}


# ------------------------------------------------------------------------------- (de)serialization

# The only classes a manifest may name: data comes back as these or as plain JSON values.
_CLASSES = {c.__name__: c for c in (PackedEncoder, PackedPostnet, PackedWaveGlow, ConvLayer, Tacotron2Config,
                                    WaveGlowConfig, AudioConfig)}


def flatten(obj: Any, tensors: dict[str, np.ndarray], prefix: str = "") -> Any:
    """Nested dataclasses / dicts / lists / arrays -> a JSON skeleton; arrays go into `tensors`
    under their path and are referenced as {"@array": path}."""
    if isinstance(obj, np.ndarray):
        name = prefix.rstrip(".")
        tensors[name] = np.ascontiguousarray(obj)
        return {"@array": name}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj).__name__
        if cls not in _CLASSES:
            raise TypeError(f"cannot store a {cls}")
        return {"@class": cls, "fields": {f.name: flatten(getattr(obj, f.name), tensors, f"{prefix}{f.name}.")
                                          for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        if any(not isinstance(k, str) or k.startswith("@") for k in obj):
            raise TypeError("dict keys must be plain strings")
        return {k: flatten(v, tensors, f"{prefix}{k}.") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return {"@list": [flatten(v, tensors, f"{prefix}{i}.") for i, v in enumerate(obj)]}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__}")


def unflatten(skel: Any, tensors: Mapping[str, np.ndarray]) -> Any:
    if isinstance(skel, dict):
        if "@array" in skel:
            return tensors[skel["@array"]]
        if "@list" in skel:
            return [unflatten(v, tensors) for v in skel["@list"]]
        if "@class" in skel:
            cls = _CLASSES[skel["@class"]]  # KeyError for anything not whitelisted
            return cls(**{k: unflatten(v, tensors) for k, v in skel["fields"].items()})
        return {k: unflatten(v, tensors) for k, v in skel.items()}
    if isinstance(skel, list):
        raise EngineError("malformed skeleton: bare list")
    return skel


# --------------------------------------------------------------------------------------- kernels


class _PlanArray:
    """What `_PlanContext.to_device` hands the stage constructors instead of device memory."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ptr = tuple(shape), np.dtype(dtype), 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class _PlanModule:
    def kernel(self, name: str) -> str:
        return name

    __getitem__ = kernel


class _PlanContext:
    """Stands in for GpuContext while the stages are constructed on the host: records every
    compile request, hands out placeholders for device memory and kernels. Constructors that
    start to need more of the context fail here loudly (tests/test_engine_cache.py runs this in CI)."""

    def __init__(self, arch: str) -> None:
        self.arch = arch  # what the stages may ask the GPU (e.g. whether to use sm_90 features)
        self.cc = arch_cc(arch)
        self.max_shared_per_block = max_shared_per_block(self.cc)
        self.requests: list[dict[str, Any]] = []

    def compile(self, sources, defines=None, name_expressions=(), arch=None):
        # a stage may ask for the GPU's architecture-specific target (sm_90 -> sm_90a: wgmma), never
        # for another GPU's
        if arch is not None and arch != self.arch + "a":
            raise EngineError(f"a stage compiled for {arch}; the engine compiles for the GPU's ({self.arch})")
        req = {"sources": [str(s) for s in sources], "defines": dict(defines or {}),
               "name_expressions": list(name_expressions)}
        if arch is not None:
            req["arch"] = arch
        if req not in self.requests:
            self.requests.append(req)
        return _PlanModule()

    def to_device(self, host, dtype=None):
        a = np.asarray(host)
        return _PlanArray(a.shape, dtype or a.dtype)

    def empty(self, shape, dtype=np.float32):
        return _PlanArray((shape,) if np.isscalar(shape) else shape, dtype)

    zeros = empty


def construct_stages(ctx, config: VoiceConfig, parts: Mapping[str, Any], precision: str,
                     tf32: bool = False) -> dict[str, Any]:
    """The pipeline's stage objects over `ctx` (a GpuContext, or a _PlanContext at build time).

    tf32 (FP32 engine): WaveGlow's GEMMs on TF32 tensor cores, and only WaveGlow's: it is ~70 % of
    the strict FP32 engine's latency, nearly all of it cuBLAS (docs/gpu-notes.md). The encoder and
    postnet conv GEMMs, the decoder's processed-memory GEMM (its steps are custom kernels) and the
    denoiser's STFT GEMMs stay strict FP32: ~1-1.5 ms a stage in all, and so the mel, gate and
    alignment of a TF32 engine are the strict engine's; only the audio carries TF32's error."""
    from .decoder import GpuDecoder
    from .encoder import EncoderGpu
    from .postnet import PostnetGpu
    from .waveglow import WaveGlowGpu

    dn = parts["denoiser"]
    return {
        "encoder": EncoderGpu(ctx, parts["encoder"]),
        "postnet": PostnetGpu(ctx, parts["postnet"]),
        "decoder": GpuDecoder(ctx, config.tacotron2, parts["decoder"], precision=precision),
        "waveglow": WaveGlowGpu(ctx, parts["waveglow"], tf32=tf32),
        "denoiser": engine_denoiser(ctx, dn["fwd"], dn["inv"], dn["win_sq"], int(dn["filter_length"]),
                                    int(dn["hop_length"])),
    }


def engine_denoiser(ctx, fwd, inv, win_sq, filter_length: int, hop_length: int):
    """A DenoiserGpu built from stored STFT bases instead of recomputing them (its constructor's
    pseudo-inverse costs seconds); bias zero until the pipeline measures it on the GPU. Mirrors
    DenoiserGpu.__init__ field for field: tests/gpu/test_pipeline_gpu.py compares the result
    with CpuBackend's denoiser. (A `bases=` argument to DenoiserGpu would make this unnecessary.)"""
    from .denoiser import DenoiserGpu

    d = DenoiserGpu.__new__(DenoiserGpu)
    d.ctx = ctx
    d.n, d.hop = filter_length, hop_length
    d.bins = filter_length // 2 + 1
    d.fwd, d.inv, d.win_sq = ctx.to_device(fwd), ctx.to_device(inv), ctx.to_device(win_sq)
    d.bias = ctx.to_device(np.zeros(d.bins, np.float32))
    d.mod = ctx.compile(["denoiser.cu"], {"DN_N": filter_length, "DN_HOP": hop_length})
    d._cap = -1
    return d


def compile_requests(config: VoiceConfig, parts: Mapping[str, Any], precision: str,
                     arch: str, tf32: bool = False) -> list[dict[str, Any]]:
    rec = _PlanContext(arch)
    construct_stages(rec, config, parts, precision, tf32)
    return rec.requests


def compile_modules(requests: list[dict[str, Any]], arch: str, progress: Progress | None = None,
                    lo: float = 0.5, hi: float = 0.95) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(requests):
        if progress:
            progress(lo + (hi - lo) * i / len(requests), f"compiling {'+'.join(r['sources'])} for {arch}")
        obj = compile_cuda(r["sources"], r.get("arch", arch), r["defines"], r["name_expressions"])
        out.append({**r, "cubin": bytes(obj.code)})
    return out


def module_key(req: Mapping[str, Any]) -> tuple:
    """The key GpuContext.compile caches a module under (its `arch` argument None): a preloaded
    module under this key is what the stage constructors get back, with no NVRTC run."""
    return (tuple(str(s) for s in req["sources"]), tuple(sorted(req["defines"].items())),
            tuple(req["name_expressions"]), req.get("arch"))


def preload_modules(ctx, modules: list[dict[str, Any]]) -> None:
    from cuda.core import ObjectCode

    from .runtime import Module

    for m in modules:
        with ctx._lock:
            ctx._modules[module_key(m)] = Module(ObjectCode.from_cubin(m["cubin"]))


# --------------------------------------------------------------------------------------- engine


@dataclass
class Engine:
    key: EngineKey
    parts: dict[str, Any]
    modules: list[dict[str, Any]]  # sources, defines, name_expressions, cubin
    path: Path | None = None       # its folder, once saved or loaded
    cached: bool = False           # loaded from disk rather than built now
    seconds: float = 0.0           # build or load time
    timings: dict[str, float] = field(default_factory=dict)  # where that time went
    problems: list[str] = field(default_factory=list)  # why a cached copy was not used / not saved


def build_engine(key: EngineKey, config: VoiceConfig, tacotron2_weights, waveglow_weights,
                 progress: Progress | None = None) -> Engine:
    t0 = time.perf_counter()
    parts = pack(config, tacotron2_weights, waveglow_weights, key.precision, progress)
    modules = compile_modules(compile_requests(config, parts, key.precision, key.arch, key.tf32), key.arch,
                              progress)
    return Engine(key, parts, modules, seconds=time.perf_counter() - t0)


def _folder_name(config: VoiceConfig, key: EngineKey) -> str:
    voice = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name or "voice").strip("._")[:40] or "voice"
    return f"{voice}-{key.precision}{'-tf32' if key.tf32 else ''}-{key.arch}-{key.digest()[:16]}"


def serialize(engine: Engine) -> tuple[bytes, dict[str, Any]]:
    """(payload bytes, manifest without the payload entry)."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    skeleton = flatten(engine.parts, tensors)
    mods = []
    for i, m in enumerate(engine.modules):
        name = f"@kernels.{i}"
        tensors[name] = np.frombuffer(m["cubin"], np.uint8)
        mods.append({k: m[k] for k in ("sources", "defines", "name_expressions", "arch") if k in m} | {"tensor": name})
    manifest = {"format": FORMAT, "key": engine.key.to_dict(), "digest": engine.key.digest(),
                "skeleton": skeleton, "modules": mods,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(engine.seconds, 3)}
    return save(tensors), manifest


def save_engine(engine: Engine, folder: Path) -> Path:
    """Write payload then manifest (atomically each); drop payloads the manifest no longer names."""
    from ..atomic import atomic_write_bytes

    data, manifest = serialize(engine)
    sha = tree_sha256([data])
    payload = f"payload-{sha[:16]}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / payload, data)
    manifest["payload"] = {"file": payload, "bytes": len(data), "tree_sha256": sha}
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
    for old in folder.glob("payload-*.safetensors"):
        if old.name != payload:
            try:
                old.unlink()
            except OSError:
                pass
    engine.path = folder
    return folder


_ST_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "U8": np.uint8, "I32": np.int32,
              "I64": np.int64}


def _map_file(path: Path):
    """The file's bytes as a read-only memory map (prefaulted where the OS allows: the checksum
    reads every page anyway); no copy is made."""
    import mmap

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)


def safetensors_views(buf) -> dict[str, np.ndarray]:
    """Read-only arrays viewing a safetensors buffer in place (safetensors.numpy.load copies every
    tensor: ~0.2 s for a full-size engine). The header is checked against the buffer's size."""
    n = int.from_bytes(bytes(buf[:8]), "little")
    if len(buf) < 8 or not 2 <= n <= len(buf) - 8:
        raise EngineError("safetensors header length out of range")
    header = json.loads(bytes(buf[8: 8 + n]))
    base, out = 8 + n, {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dt = np.dtype(_ST_DTYPES[t["dtype"]])
        shape = tuple(int(d) for d in t["shape"])
        begin, end = (int(x) for x in t["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(buf) - base or end - begin != count * dt.itemsize:
            raise EngineError(f"tensor {name!r} lies outside the payload")
        out[name] = np.frombuffer(buf, dt, count, base + begin).reshape(shape)
    return out


def load_engine(folder: Path, key: EngineKey) -> Engine:
    """The engine in `folder` if it is exactly the one `key` names and intact; EngineError otherwise.
    Its arrays view the payload file's memory map (read-only, no copy)."""
    t0 = time.perf_counter()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"no engine in {folder}") from None
    except (OSError, ValueError) as e:
        raise EngineError(f"unreadable manifest {folder / MANIFEST}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EngineError(f"{folder}: engine format {manifest.get('format') if isinstance(manifest, dict) else '?'}"
                          f" is not {FORMAT}")
    if manifest.get("key") != key.to_dict():
        diff = sorted(k for k, v in key.to_dict().items() if (manifest.get("key") or {}).get(k) != v)
        raise EngineError(f"{folder}: built for another key (differs in {', '.join(diff) or 'layout'})")
    try:
        p = manifest["payload"]
        name, size, sha = str(p["file"]), int(p["bytes"]), str(p["tree_sha256"])
        skeleton, mods = manifest["skeleton"], manifest["modules"]
    except (KeyError, TypeError, ValueError) as e:
        raise EngineError(f"{folder}: incomplete manifest ({e})") from None
    if Path(name).name != name or not name.startswith("payload-"):
        raise EngineError(f"{folder}: manifest names an odd payload file {name!r}")
    t1 = time.perf_counter()
    try:
        data = _map_file(folder / name)
    except (OSError, ValueError) as e:
        raise EngineError(f"{folder}: payload unreadable: {e}") from None
    if len(data) != size:
        raise EngineError(f"{folder}: payload has {len(data)} bytes, the manifest says {size} (truncated?)")
    t2 = time.perf_counter()
    if tree_sha256([data]) != sha:
        raise EngineError(f"{folder}: payload checksum mismatch (corrupt or altered)")
    t3 = time.perf_counter()
    try:
        tensors = safetensors_views(data)
        parts = unflatten(skeleton, tensors)
        modules = [{"sources": list(m["sources"]), "defines": dict(m["defines"]),
                    "name_expressions": list(m["name_expressions"]), "cubin": tensors[m["tensor"]].tobytes()}
                   | ({"arch": str(m["arch"])} if "arch" in m else {})
                   for m in mods]
    except EngineError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a malformed file makes the parser raise
        raise EngineError(f"{folder}: payload does not parse: {type(e).__name__}: {e}") from None
    t4 = time.perf_counter()
    return Engine(key, parts, modules, path=folder, cached=True, seconds=t4 - t0,
                  timings={"manifest": t1 - t0, "read": t2 - t1, "verify": t3 - t2, "parse": t4 - t3})


def get_engine(path: Path | None, config: VoiceConfig, tacotron2_weights, waveglow_weights, *, gpu_name: str,
               arch: str, precision: str, max_batch: int, cache_dir: Path | None = None,
               progress: Progress | None = None, tf32: bool = False) -> Engine:
    """The cached engine for this key, or a fresh build (saved to the cache where it can be)."""
    t0 = time.perf_counter()
    key = make_key(path, config, tacotron2_weights, waveglow_weights, gpu_name=gpu_name, arch=arch,
                   precision=precision, max_batch=max_batch, tf32=tf32)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / _folder_name(config, key)
    problems = []
    t_key = time.perf_counter() - t0
    try:
        engine = load_engine(folder, key)
        engine.seconds = time.perf_counter() - t0  # the key's hashing counts as loading
        engine.timings = {"key": t_key, **engine.timings}
        if progress:
            progress(1.0, f"engine loaded from {folder}")
        return engine
    except EngineError as e:
        if (folder / MANIFEST).exists():
            problems.append(str(e))
    engine = build_engine(key, config, tacotron2_weights, waveglow_weights, progress)
    if progress:
        progress(0.96, f"saving the engine to {folder}")
    try:
        save_engine(engine, folder)
    except OSError as e:
        problems.append(f"engine not cached ({folder}: {e})")
    engine.problems = problems
    engine.seconds = time.perf_counter() - t0
    if progress:
        progress(1.0, "engine ready")
    return engine

