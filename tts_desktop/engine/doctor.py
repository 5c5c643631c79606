"""`tts-desktop doctor`: what this machine offers the engine, and whether every kernel compiles.

Every probe is guarded: a missing package, driver, GPU or audio library is reported, never raised.
Kernels compile through NVRTC alone, so on a machine without a GPU (CI) `doctor_report('sm_80')`
still proves every kernels/*.cu builds for that architecture. Each kernel file must therefore
compile with no -D defines (they default to NVIDIA's published model sizes).
"""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from typing import Any

DEFAULT_ARCH = "sm_80"  # the oldest architecture the engine targets (FP16 tensor cores, 40+ MB L2 on A100)

_PACKAGES = ("numpy", "cuda-core", "cuda-bindings", "cuda-pathfinder", "nvmath-python", "nvidia-cuda-nvrtc",
             "nvidia-cuda-runtime", "nvidia-cuda-crt", "nvidia-cublas", "sounddevice", "soundfile")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except Exception:  # noqa: BLE001
            out[p] = None
    return out


def _gpu_info() -> dict[str, Any]:
    from .runtime import gpu_status

    ok, reason = gpu_status()
    info: dict[str, Any] = {"ok": ok, "status": reason}
    if not ok:
        return info
    try:
        from cuda.bindings import driver

        from .runtime import _check

        dev = _check(driver.cuDeviceGet(0))
        A = driver.CUdevice_attribute
        major = _check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
        minor = _check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
        info["arch"] = f"sm_{major}{minor}"
        info["name"] = _check(driver.cuDeviceGetName(128, dev)).split(b"\0", 1)[0].decode()
        info["memory_bytes"] = int(_check(driver.cuDeviceTotalMem(dev)))
        info["sm_count"] = int(_check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)))
        info["l2_bytes"] = int(_check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev)))
        info["max_shared_per_block"] = int(_check(driver.cuDeviceGetAttribute(
            A.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev)))
        v = int(_check(driver.cuDriverGetVersion()))
        info["driver_cuda"] = f"{v // 1000}.{(v % 1000) // 10}"
    except Exception as e:  # noqa: BLE001
        info["error"] = f"{type(e).__name__}: {e}"
    return info


def _cublas_version() -> str | None:
    try:
        from nvmath.bindings import cublas

        # cublasGetProperty needs the library, not a GPU
        return ".".join(str(cublas.get_property(i)) for i in range(3))
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({type(e).__name__}: {str(e)[:120]})"


def _audio() -> dict[str, Any]:
    try:
        import sounddevice as sd

        devs = sd.query_devices()
        outs = [d["name"] for d in devs if d.get("max_output_channels", 0) > 0]
        try:
            default = sd.query_devices(kind="output")["name"]
        except Exception:  # noqa: BLE001
            default = None
        return {"ok": bool(outs), "outputs": outs, "default_output": default}
    except Exception as e:  # noqa: BLE001 - PortAudio missing, no sound server...
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}


def _compile_all(arch: str) -> list[dict[str, Any]]:
    from .compile import SM90A_KERNELS, CompileError, compile_cuda, kernel_files

    results = []
    # files the engine builds for the architecture-specific target too (sm_90 -> sm_90a: wgmma); for
    # other targets such a file compiles to an empty module
    targets = [(f, arch, {}) for f in kernel_files()]
    targets += [(f, arch + "a", d) for f in kernel_files() if arch == "sm_90" and f.name in SM90A_KERNELS
                for d in SM90A_KERNELS[f.name]]
    for f, target, defines in targets:
        t0 = time.perf_counter()
        log: list[str] = []
        name = f.name if target == arch else \
            f"{f.name} ({target}{''.join(f', {k}' if v == 1 else f', {k}={v}' for k, v in defines.items())})"
        try:
            obj = compile_cuda([f], target, defines, log=log)
            results.append({"kernel": name, "ok": True, "cubin_bytes": len(obj.code),
                            "seconds": round(time.perf_counter() - t0, 3),
                            "warnings": "".join(log).strip()[:2000]})
        except CompileError as e:
            results.append({"kernel": name, "ok": False, "error": str(e)[:4000]})
        except Exception as e:  # noqa: BLE001
            results.append({"kernel": name, "ok": False, "error": f"{type(e).__name__}: {e}"[:4000]})
    return results


def doctor_report(arch: str | None = None) -> dict[str, Any]:
    """Everything `tts-desktop doctor` prints, as a dict. `ok` is True when every kernel compiled
    (the GPU being absent is reported but is not a failure: CI has none)."""
    from .compile import KERNELS_DIR, cuda_include_dirs, kernel_source_hash, nvrtc_version

    rep: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
    }
    try:
        rep["gpu"] = _gpu_info()
    except Exception as e:  # noqa: BLE001
        rep["gpu"] = {"ok": False, "status": f"{type(e).__name__}: {e}"}
    nv = nvrtc_version()
    rep["nvrtc"] = f"{nv[0]}.{nv[1]}" if nv else None
    rep["cublas"] = _cublas_version()
    try:
        rep["cuda_include_dirs"] = cuda_include_dirs()
    except Exception as e:  # noqa: BLE001
        rep["cuda_include_dirs"] = f"error: {e}"
    rep["audio"] = _audio()
    target = arch or rep["gpu"].get("arch") or DEFAULT_ARCH
    rep["arch"] = target
    rep["kernels_dir"] = str(KERNELS_DIR)
    try:
        rep["kernel_source_hash"] = kernel_source_hash()[:16]
        rep["kernels"] = _compile_all(target)
    except Exception as e:  # noqa: BLE001
        rep["kernels"] = [{"kernel": "*", "ok": False, "error": f"{type(e).__name__}: {e}"}]
    rep["waveglow_fused"] = _waveglow_paths(target, rep["gpu"])
    rep["ok"] = bool(rep["kernels"]) and all(k["ok"] for k in rep["kernels"])
    return rep


def _waveglow_paths(arch: str, gpu: dict[str, Any]) -> dict[str, Any]:
    """Whether the FP16 engine's fused WaveGlow layer fits this GPU's (or, for another `arch`, that
    architecture's) shared memory per block, at NVIDIA's 256 channels and the demo voice's 128:
    where it does not, the engine runs the unfused layer (slower, same results). And whose layer
    GEMM it runs: ours with the cond folded (kernels/wg_gemm_gate.cu, sm_90 with the fused layer;
    1 GB more weights at 256 channels) or cuBLAS's."""
    from ..model.config import WaveGlowConfig
    from .runtime import arch_cc, max_shared_per_block
    from .waveglow import FUSED_SHAPES, fused_shape, fused_smem_bytes, gemm_gate_supported

    try:
        cc = arch_cc(arch)
    except ValueError:  # not an sm_XY name: its kernels fail to compile above, and this says 48 KiB
        cc = None
    if gpu.get("ok") and gpu.get("arch") == arch and gpu.get("max_shared_per_block"):
        limit, source = int(gpu["max_shared_per_block"]), "this GPU"
    else:
        limit, source = (48 * 1024 if cc is None else max_shared_per_block(cc)), arch
    out: dict[str, Any] = {"limit": limit, "source": source}
    for c in (256, 128):
        shape = fused_shape(c, limit)
        out[str(c)] = ({"groups": shape[0], "rows": shape[1], "bytes": fused_smem_bytes(c, shape[1], shape[0])}
                       if shape else {"needs": min(fused_smem_bytes(c, bm, g) for g, bm in FUSED_SHAPES)})
        folded = shape is not None and cc is not None and gemm_gate_supported(WaveGlowConfig(wn_n_channels=c), cc,
                                                                              limit)
        out[str(c)]["gemm"] = "wg_gemm_gate, cond folded" if folded else "cuBLAS"
    return out


def format_report(rep: dict[str, Any]) -> str:
    g = rep.get("gpu", {})
    lines = [
        f"python        {rep.get('python')}  ({rep.get('platform')})",
        f"gpu           {'OK ' if g.get('ok') else 'none'} {g.get('status', '')}",
    ]
    if g.get("ok"):
        lines.append(f"              {g.get('sm_count')} SMs, L2 {g.get('l2_bytes', 0) >> 20} MiB, "
                     f"memory {g.get('memory_bytes', 0) >> 20} MiB, driver CUDA {g.get('driver_cuda')}")
    lines += [
        f"nvrtc         {rep.get('nvrtc') or 'not found'}",
        f"cublas        {rep.get('cublas') or 'not found'}",
        f"cuda headers  {rep.get('cuda_include_dirs') or 'not found'}",
    ]
    pk = rep.get("packages", {})
    lines.append("packages      " + ", ".join(f"{k} {v}" for k, v in pk.items() if v))
    missing = [k for k, v in pk.items() if not v]
    if missing:
        lines.append("not installed " + ", ".join(missing))
    a = rep.get("audio", {})
    if a.get("ok"):
        lines.append(f"audio         {len(a['outputs'])} output device(s), default: {a.get('default_output')}")
    else:
        lines.append(f"audio         none ({a.get('error', 'no output device')})")
    lines.append(f"kernels       {rep.get('kernels_dir')} (hash {rep.get('kernel_source_hash')}) for {rep.get('arch')}")
    for k in rep.get("kernels", []):
        if k["ok"]:
            lines.append(f"  ok      {k['kernel']:<28} {k['cubin_bytes']:>8} B  {k['seconds']:.2f} s")
        else:
            lines.append(f"  FAILED  {k['kernel']:<28} {k['error']}")
    wf = rep.get("waveglow_fused")
    if wf:
        def path(c: str, who: str) -> str:
            p = wf[c]
            if "groups" in p:
                return (f"{c} channels ({who}) fused, {p['groups']} group(s) x {p['rows']} rows, "
                        f"{p['bytes'] >> 10} KiB, GEMM {p['gemm']}")
            return f"{c} channels ({who}) unfused (the fused layer needs {p['needs'] >> 10} KiB), GEMM {p['gemm']}"
        lines.append(f"waveglow      FP16 layer, {wf['limit'] >> 10} KiB shared memory per block ({wf['source']}): "
                     f"{path('256', 'NVIDIA')}; {path('128', 'demo voice')}")
    lines.append("result        " + ("OK" if rep.get("ok") else "FAILED"))
    return "\n".join(lines)
