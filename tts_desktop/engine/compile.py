"""Run-time compilation of the CUDA kernels in `kernels/` through NVRTC (cuda.core `Program`).

Compiling needs no GPU and no driver: only the NVRTC library (pip `nvidia-cuda-nvrtc`) and the CUDA
headers (pip `nvidia-cuda-runtime` for cuda_fp16.h & co., `nvidia-cuda-crt` for the `crt/` headers
that cuda_runtime.h and the device runtime API pull in, or a CUDA toolkit). That is what lets
`tts-desktop doctor --arch sm_80` and CI build every kernel on a machine without a GPU.

Where the kernels live (`KERNELS_DIR`), first match wins:
  1. `$TTS_DESKTOP_KERNELS` (a developer pointing at a work tree);
  2. `tts_desktop/kernels/` inside the installed package: the wheel case, where the build (setup.py)
     copies the repository's `kernels/*.cu|*.cuh` in (a checkout or an editable install has no such
     folder);
  3. `kernels/` at the repository root, beside the `tts_desktop/` package (the checkout case).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Iterable, Mapping

from tts_desktop.assets import shipped_dir


def _find_kernels_dir() -> Path:
    env = os.environ.get("TTS_DESKTOP_KERNELS")
    if env:
        return Path(env).resolve()
    return shipped_dir("kernels")


KERNELS_DIR: Path = _find_kernels_dir()


# kernels whose code exists only for sm_90a (wgmma, setmaxnreg): the engine compiles them for
# sm_90a on an sm_90 GPU (the stage asks for ctx.arch + "a"), and doctor does too, once per build
# variant listed here (defines that change the code: GG_FOLD reads other operands, GL_C sizes the
# accumulators and picks the res GEMM's wgmma shape)
SM90A_KERNELS = {"wg_gemm_gate.cu": ({}, {"GG_FOLD": 1}), "wg_layer.cu": ({"GL_C": 128}, {"GL_C": 256})}


class CompileError(RuntimeError):
    """NVRTC rejected a kernel; the message carries NVRTC's log."""


def kernel_files() -> list[Path]:
    """Every kernel source (*.cu) in KERNELS_DIR, sorted: the units doctor and CI compile."""
    return sorted(KERNELS_DIR.glob("*.cu"))


def kernel_source_hash() -> str:
    """SHA-256 over every kernels/*.cu and *.cuh (names and bytes): part of an engine cache key, so a
    kernel edit invalidates cached engines."""
    h = hashlib.sha256()
    for p in sorted(list(KERNELS_DIR.glob("*.cu")) + list(KERNELS_DIR.glob("*.cuh"))):
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def cuda_include_dirs() -> list[str]:
    """Folders holding the CUDA headers (cuda_fp16.h, cuda_device_runtime_api.h, crt/...).

    cuda.pathfinder knows both layouts: pip's `nvidia/cu13/include` and a toolkit's include folder
    ($CUDA_PATH / $CUDA_HOME / /usr/local/cuda). The toolkit folders are added after it as fallbacks."""
    dirs: list[str] = []

    def add(d) -> None:
        if d and os.path.isdir(d) and str(d) not in dirs:
            dirs.append(str(d))

    try:
        from cuda import pathfinder

        for lib in ("cudart", "nvrtc"):
            try:
                add(pathfinder.find_nvidia_header_directory(lib))
            except Exception:  # noqa: BLE001 - an unknown name or a layout it does not know
                pass
    except Exception:  # noqa: BLE001 - cuda-pathfinder absent (cuda-core < 0.3)
        pass
    for var in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(var):
            add(os.path.join(os.environ[var], "include"))
    add("/usr/local/cuda/include")
    return dirs


def _as_unit(sources: Iterable[Path | str]) -> tuple[str, list[Path]]:
    """One translation unit: each file is #included by absolute path (NVRTC's log then names the file
    and line); a str holding source text (it has a newline) is pasted in as it is."""
    parts: list[str] = []
    files: list[Path] = []
    for s in sources:
        if isinstance(s, str) and "\n" in s:
            parts.append(s)
            continue
        p = Path(s)
        if not p.is_absolute():
            p = KERNELS_DIR / p
        if not p.is_file():
            raise CompileError(f"kernel source {p} not found (KERNELS_DIR={KERNELS_DIR})")
        files.append(p)
        parts.append(f'#include "{p.as_posix()}"')
    return "\n".join(parts) + "\n", files


_cache: dict[str, object] = {}
_cache_lock = threading.Lock()


def compile_cuda(
    sources: list[Path | str],
    arch: str,
    defines: Mapping[str, object] | None = None,
    name_expressions: Iterable[str] = (),
    *,
    lineinfo: bool = True,
    log: list[str] | None = None,
):
    """Compile `sources` into one cubin for `arch` ('sm_80', 'sm_90', 'sm_90a'...) and return
    cuda.core's `ObjectCode` (`.code` holds the cubin bytes; `.get_kernel(name)` needs a context).

    `defines` become -D macros (the kernels' compile-time sizes). `name_expressions` name template
    instantiations to keep (then `get_kernel` accepts those expressions). Results are cached in memory
    on (source bytes, arch, defines, names). `log`, if given, receives NVRTC's log (warnings)."""
    try:
        from cuda.core import Program, ProgramOptions
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"cuda.core is not importable ({e}); install the 'gpu' extra") from e
    if not arch.startswith("sm_"):
        raise CompileError(f"arch must look like 'sm_90', got {arch!r}")
    unit, files = _as_unit(sources)
    macros = sorted((str(k), str(v)) for k, v in (defines or {}).items())
    names = tuple(name_expressions)
    h = hashlib.sha256()
    h.update(unit.encode())
    for p in files:
        h.update(p.read_bytes())
    # headers the unit includes from KERNELS_DIR also change the result
    for p in sorted(KERNELS_DIR.glob("*.cuh")):
        h.update(p.read_bytes())
    h.update(repr((arch, macros, names, lineinfo)).encode())
    key = h.hexdigest()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit

    opts = ProgramOptions(
        arch=arch,
        std="c++17",
        include_path=[str(KERNELS_DIR), *cuda_include_dirs()],
        define_macro=macros or None,
        lineinfo=lineinfo,
        name="+".join(p.name for p in files) or "inline_source",
    )

    class _Log:
        def __init__(self) -> None:
            self.text: list[str] = []

        def write(self, s: str) -> None:
            self.text.append(s)

    logs = _Log()
    try:
        obj = Program(unit, "c++", opts).compile("cubin", name_expressions=names, logs=logs)
    except Exception as e:  # noqa: BLE001 - cuda.core raises its own types; keep the log
        raise CompileError(f"NVRTC failed for {[p.name for p in files]} ({arch}): {e}") from e
    if log is not None:
        log.extend(logs.text)
    with _cache_lock:
        _cache[key] = obj
    return obj


def nvrtc_version() -> tuple[int, int] | None:
    """NVRTC's (major, minor), or None where NVRTC cannot be loaded."""
    try:
        from cuda.bindings import nvrtc

        err, major, minor = nvrtc.nvrtcVersion()
        return (int(major), int(minor)) if int(err) == 0 else None
    except Exception:  # noqa: BLE001
        return None


def headline(error: BaseException) -> str:
    """One line that says why: for an NVRTC failure, its first 'error:' line (a static_assert
    naming the unsupported dimension), not the 'compilation log:' header."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[0] if lines else type(error).__name__
