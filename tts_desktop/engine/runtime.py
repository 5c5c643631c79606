"""The GPU runtime the engine stands on: one device, one stream, memory, kernel launches, timing, cuBLAS.

Built on cuda.core (device, stream, events, NVRTC programs, launches, graphs) and cuda.bindings'
driver API for the few things cuda.core leaves to it (host<->device copies into raw pointers,
memsets, kernel attributes). cuBLAS comes through nvmath-python's low-level bindings, on the
context's stream, so GEMMs can sit inside captured CUDA graphs next to our own kernels.

Nothing here imports at module level anything beyond NumPy: `gpu_status()` must answer on a machine
with no driver, no GPU or no cuda-python at all.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .compile import compile_cuda


class GpuUnavailable(RuntimeError):
    """No usable NVIDIA GPU: the message says why (no cuda-python, no driver, no device...)."""


def _err_name(err) -> str:
    try:
        from cuda.bindings import driver

        e, s = driver.cuGetErrorName(err)
        return s.decode() if int(e) == 0 else str(err)
    except Exception:  # noqa: BLE001
        return str(err)


def _check(result):
    """Unpack a cuda.bindings call's (err, *values) tuple; raise on any error code."""
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver call failed: {_err_name(err)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def gpu_status() -> tuple[bool, str]:
    """(True, 'NVIDIA H100 80GB HBM3, sm_90, driver 13.0') or (False, why not). Never raises."""
    try:
        from cuda.bindings import driver
    except Exception as e:  # noqa: BLE001
        return False, f"cuda-python (cuda-bindings) is not installed: {e}"
    try:
        err = driver.cuInit(0)[0]
    except Exception as e:  # noqa: BLE001 - pathfinder raises when libcuda.so is absent
        return False, f"no NVIDIA driver: {e}"
    if int(err) != 0:
        return False, f"cuInit failed: {_err_name(err)} (no usable GPU or driver)"
    try:
        n = _check(driver.cuDeviceGetCount())
        if n == 0:
            return False, "the NVIDIA driver sees no GPU"
        dev = _check(driver.cuDeviceGet(0))
        name = _check(driver.cuDeviceGetName(128, dev)).split(b"\0", 1)[0].decode()
        A = driver.CUdevice_attribute
        major = _check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
        minor = _check(driver.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
        ver = _check(driver.cuDriverGetVersion())
    except Exception as e:  # noqa: BLE001
        return False, f"querying the GPU failed: {e}"
    if major < 7:
        return False, f"{name} (sm_{major}{minor}) is older than the engine supports (sm_70+)"
    try:
        import cuda.core  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return False, f"cuda-core is not installed: {e}"
    return True, f"{name}, sm_{major}{minor}, driver {ver // 1000}.{(ver % 1000) // 10}"


# --------------------------------------------------------------------------------------- arrays


class DeviceArray:
    """A dense C-ordered array in device memory. Owns its allocation (freed with `free()` or when
    garbage collected, on the context's stream)."""

    def __init__(self, ctx: "GpuContext", buf, shape: tuple[int, ...], dtype) -> None:
        self.ctx = ctx
        self._buf = buf
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ptr = int(buf.handle)
        self._owner = True

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, ptr=0x{self.ptr:x})"

    def copy_from(self, host: np.ndarray, *, sync: bool = True) -> "DeviceArray":
        """Copy a host array of the same byte size in (converted to this dtype first)."""
        from cuda.bindings import driver

        a = np.ascontiguousarray(host, dtype=self.dtype)
        if a.nbytes != self.nbytes:
            raise ValueError(f"copy_from: {a.shape} {a.dtype} into {self.shape} {self.dtype}")
        _check(driver.cuMemcpyHtoDAsync(self.ptr, a.ctypes.data, a.nbytes, self.ctx.stream.handle))
        if sync:  # `a` may be a temporary: wait before it can be freed
            self.ctx.synchronize()
        else:
            self.ctx._keep_alive.append(a)
        return self

    def to_host(self) -> np.ndarray:
        """Wait for the stream, then return a host copy."""
        from cuda.bindings import driver

        out = np.empty(self.shape, self.dtype)
        _check(driver.cuMemcpyDtoHAsync(out.ctypes.data, self.ptr, self.nbytes, self.ctx.stream.handle))
        self.ctx.synchronize()
        return out

    def copy_from_device(self, other: "DeviceArray", nbytes: int | None = None) -> None:
        from cuda.bindings import driver

        n = self.nbytes if nbytes is None else nbytes
        _check(driver.cuMemcpyDtoDAsync(self.ptr, other.ptr, n, self.ctx.stream.handle))

    def fill_bytes(self, byte: int) -> None:
        """memset every byte (async on the stream)."""
        from cuda.bindings import driver

        _check(driver.cuMemsetD8Async(self.ptr, byte & 0xFF, self.nbytes, self.ctx.stream.handle))

    def poison(self) -> None:
        """Fill with 0xFF bytes: NaN in float32 and float16, -1 in integers; tests poison outputs so an
        element a kernel forgets to write shows up."""
        self.fill_bytes(0xFF)

    def zero(self) -> None:
        self.fill_bytes(0)

    def view(self, shape: Sequence[int], dtype=None) -> "DeviceArray":
        """Same memory, another shape/dtype (at most as many bytes)."""
        v = DeviceArray.__new__(DeviceArray)
        v.ctx, v._buf, v.ptr, v._owner = self.ctx, self._buf, self.ptr, False
        v.shape, v.dtype = tuple(int(s) for s in shape), np.dtype(dtype or self.dtype)
        if v.nbytes > self.nbytes:
            raise ValueError("view larger than its base")
        return v

    def free(self) -> None:
        if self._buf is not None and self._owner:
            self.ctx._account(-self.nbytes)
            self._buf.close(self.ctx.stream)
        self._buf = None

    def __del__(self) -> None:
        # the cuda.core Buffer frees itself when collected; keep the byte count honest
        try:
            if self._buf is not None and self._owner:
                self.ctx._account(-self.nbytes)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


# --------------------------------------------------------------------------------------- modules


class Module:
    """A compiled, loaded cubin; `kernel(name)` is cached."""

    def __init__(self, obj) -> None:
        self.obj = obj
        self._kernels: dict[str, Any] = {}

    def kernel(self, name: str):
        k = self._kernels.get(name)
        if k is None:
            k = self._kernels[name] = self.obj.get_kernel(name)
        return k

    __getitem__ = kernel


def _kernel_arg(a):
    """Python values -> what cuda.core packs into the kernel's parameter buffer.

    DeviceArray -> its pointer (np.uintp: cuda.core 1.2 packs NumPy scalars, not ctypes pointers); Python int -> int32 and float -> float32 (the kernels' `int`/`float`
    parameters); NumPy scalars, ctypes values, cuda.core Buffers and graph conditions pass through, so
    a 64-bit integer parameter takes np.int64 / np.uint64."""
    if isinstance(a, DeviceArray):
        return np.uintp(a.ptr)  # pointers travel as 64-bit integers
    if isinstance(a, bool):
        return np.int32(int(a))
    if isinstance(a, int):
        if not -(2**31) <= a < 2**31:
            raise OverflowError(f"kernel int argument {a} does not fit int32; pass np.int64/np.uint64")
        return np.int32(a)
    if isinstance(a, float):
        return np.float32(a)
    return a


class Event:
    """A driver timing event (the driver API directly: cuda.core's event options vary by version)."""

    def __init__(self, ctx: "GpuContext") -> None:
        from cuda.bindings import driver

        self._ev = _check(driver.cuEventCreate(driver.CUevent_flags.CU_EVENT_DEFAULT))
        _check(driver.cuEventRecord(self._ev, ctx.stream.handle))

    def sync(self) -> None:
        from cuda.bindings import driver

        _check(driver.cuEventSynchronize(self._ev))

    def __sub__(self, other: "Event") -> float:
        from cuda.bindings import driver

        return float(_check(driver.cuEventElapsedTime(other._ev, self._ev)))

    def __del__(self) -> None:
        try:
            from cuda.bindings import driver

            driver.cuEventDestroy(self._ev)
        except Exception:  # noqa: BLE001
            pass


@dataclass
class Timer:
    """Device-event timer: `with ctx.timer() as t: ...; t.ms` (synchronizes on exit)."""

    ctx: "GpuContext"
    ms: float = float("nan")

    def __enter__(self) -> "Timer":
        self._start = self.ctx.record()
        return self

    def __exit__(self, *exc) -> None:
        end = self.ctx.record()
        end.sync()
        self.ms = float(end - self._start)


# The most dynamic shared memory one block may opt into, per compute capability (CUDA C Programming
# Guide, "Technical Specifications per Compute Capability"). GpuContext reads its device's own
# figure; this table stands in where there is no device (an engine planned on the host, or
# `doctor --arch`), so both choose the same kernels. Unknown architectures get the 48 KiB every
# GPU allows without opting in.
MAX_SHARED_PER_BLOCK = {(7, 0): 96 * 1024, (7, 5): 64 * 1024, (8, 0): 163 * 1024, (8, 6): 99 * 1024,
                        (8, 7): 163 * 1024, (8, 9): 99 * 1024, (9, 0): 227 * 1024, (10, 0): 227 * 1024,
                        (12, 0): 99 * 1024}


def max_shared_per_block(cc: tuple[int, int]) -> int:
    return MAX_SHARED_PER_BLOCK.get(tuple(cc), 48 * 1024)


def arch_cc(arch: str) -> tuple[int, int]:
    """'sm_90' (or 'sm_90a') -> (9, 0); ValueError for anything else."""
    m = re.fullmatch(r"sm_(\d+)(\d)[a-z]?", arch)
    if not m:
        raise ValueError(f"arch must look like 'sm_90', got {arch!r}")
    return int(m.group(1)), int(m.group(2))


class GpuContext:
    """One GPU, one stream. Create once per process (cheap to share between pipelines)."""

    def __init__(self, device_id: int = 0) -> None:
        ok, why = gpu_status()
        if not ok:
            raise GpuUnavailable(why)
        from cuda.core import Device

        self.device = Device(device_id)
        self.device.set_current()
        self.stream = self.device.create_stream()
        cc = self.device.compute_capability
        self.cc = (int(cc[0]), int(cc[1]))
        self.arch = f"sm_{self.cc[0]}{self.cc[1]}"
        self.name = self.device.name
        self.props = self.device.properties
        self.sm_count = int(self.props.multiprocessor_count)
        self.l2_bytes = int(self.props.l2_cache_size)
        self.max_shared_per_block = int(self.props.max_shared_memory_per_block_optin)
        self._modules: dict[tuple, Module] = {}
        self._lock = threading.Lock()
        self.bytes_in_use = 0
        self.peak_bytes = 0
        self._keep_alive: list[Any] = []
        self._blas: Blas | None = None

    # ---- compile / launch
    def compile(
        self,
        sources: Sequence[Path | str],
        defines: Mapping[str, object] | None = None,
        name_expressions: Iterable[str] = (),
        arch: str | None = None,
    ) -> Module:
        """NVRTC-compile for this GPU (or `arch`) and load; cached in memory per (sources, defines)."""
        key = (tuple(str(s) for s in sources), tuple(sorted((defines or {}).items())), tuple(name_expressions), arch)
        with self._lock:
            m = self._modules.get(key)
        if m is None:
            obj = compile_cuda(list(sources), arch or self.arch, defines, name_expressions)
            m = Module(obj)
            with self._lock:
                self._modules[key] = m
        return m

    def launch(self, kernel, grid, block, *args, shmem: int = 0, stream=None, cluster: int = 1) -> None:
        """Launch on the context's stream, or on `stream` (a cuda.core Stream or a GraphBuilder being
        captured). Kernels wanting more than 48 KiB dynamic shared memory get their limit raised.
        cluster > 1: thread-block clusters of that many blocks (sm_90+); `grid` counts blocks."""
        from cuda.core import LaunchConfig, launch

        if shmem > 48 * 1024:
            self.set_max_dynamic_shmem(kernel, shmem)
        if cluster > 1:
            if grid % cluster:
                raise ValueError(f"grid {grid} is not a multiple of the cluster size {cluster}")
            # cuda.core counts the grid in clusters when a cluster shape is given
            cfg = LaunchConfig(grid=grid // cluster, cluster=cluster, block=block, shmem_size=shmem)
        else:
            cfg = LaunchConfig(grid=grid, block=block, shmem_size=shmem)
        launch(self.stream if stream is None else stream, cfg, kernel, *(_kernel_arg(a) for a in args))

    def set_max_dynamic_shmem(self, kernel, nbytes: int) -> None:
        from cuda.bindings import driver

        attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        h = kernel.handle
        if isinstance(h, driver.CUkernel):
            _check(driver.cuKernelSetAttribute(attr, nbytes, h, self.device.device_id))
        else:
            _check(driver.cuFuncSetAttribute(h, attr, nbytes))

    def synchronize(self) -> None:
        self.stream.sync()
        self._keep_alive.clear()

    # ---- events / timing
    def record(self) -> "Event":
        """A timing event recorded on the stream now; `later - earlier` is milliseconds."""
        return Event(self)

    def timer(self) -> Timer:
        return Timer(self)

    # ---- memory
    def _account(self, delta: int) -> None:
        with self._lock:
            self.bytes_in_use += delta
            self.peak_bytes = max(self.peak_bytes, self.bytes_in_use)

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_bytes = self.bytes_in_use

    def alloc(self, nbytes: int):
        """Raw device allocation (a cuda.core Buffer, from the device's stream-ordered pool)."""
        buf = self.device.allocate(max(int(nbytes), 1), stream=self.stream)
        self._account(int(nbytes))
        return buf

    def empty(self, shape: Sequence[int] | int, dtype=np.float32) -> DeviceArray:
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return DeviceArray(self, self.alloc(nbytes), shape, dtype)

    def zeros(self, shape, dtype=np.float32) -> DeviceArray:
        a = self.empty(shape, dtype)
        a.zero()
        return a

    def to_device(self, host: np.ndarray, dtype=None) -> DeviceArray:
        host = np.ascontiguousarray(host, dtype=dtype or host.dtype)
        a = self.empty(host.shape, host.dtype)
        a.copy_from(host)
        return a

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes on the device, as the driver sees them."""
        from cuda.bindings import driver

        return tuple(int(x) for x in _check(driver.cuMemGetInfo()))

    # ---- graphs
    def graph_builder(self):
        """A cuda.core GraphBuilder capturing this context's stream work (see cuda.core.graph)."""
        return self.stream.create_graph_builder()

    # ---- cuBLAS
    @property
    def blas(self) -> "Blas":
        if self._blas is None:
            self._blas = Blas(self)
        return self._blas


# --------------------------------------------------------------------------------------- cuBLAS

# cudaDataType_t values (library_types.h); nvmath takes them as plain ints
CUDA_R_32F = 0
CUDA_R_16F = 2
_DT = {np.dtype(np.float32): CUDA_R_32F, np.dtype(np.float16): CUDA_R_16F}


class Blas:
    """cuBLAS on the context's stream, row-major (NumPy) conventions.

    `gemm(A, B, C)` computes C = alpha * op(A) @ op(B) + beta * C with A, B, C C-ordered 2-D
    DeviceArrays (or views). float32 everywhere -> cublasSgemm (no TF32: default math mode);
    float16 A/B -> cublasGemmEx with FP32 accumulation, C float16 or float32.

    `tf32=True` (float32 operands only, sm_80+): cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32, so
    cuBLAS may run the product on TF32 tensor cores: A and B enter the multiply with a 10-bit
    mantissa (like FP16), products accumulate in FP32, C stays float32. A per-call choice, never a
    handle math mode: the one Blas is shared by every engine of the process, and a strict FP32
    engine must stay strict next to a TF32 one. (NVIDIA_TF32_OVERRIDE=0 in the environment makes
    cuBLAS ignore the request.)

    A workspace is set up front so cuBLAS allocates nothing while a graph is being captured."""

    WORKSPACE_BYTES = 32 << 20

    def __init__(self, ctx: GpuContext) -> None:
        from nvmath.bindings import cublas

        self.ctx = ctx
        self._cb = cublas
        self.handle = cublas.create()
        cublas.set_stream(self.handle, int(ctx.stream.handle))
        self._ws = ctx.alloc(self.WORKSPACE_BYTES)
        cublas.set_workspace(self.handle, int(self._ws.handle), self.WORKSPACE_BYTES)
        self._one = np.ones(1, np.float32)
        self._scalars: list[np.ndarray] = []

    def version(self) -> int:
        return int(self._cb.get_version(self.handle))

    def set_stream(self, stream) -> None:
        self._cb.set_stream(self.handle, int(stream.handle))

    def _scalar(self, v: float) -> int:
        # host pointer mode: cuBLAS reads alpha/beta when the call is made (also under capture);
        # keep the arrays alive anyway, they are tiny
        a = np.array([v], np.float32)
        self._scalars.append(a)
        if len(self._scalars) > 4096:
            del self._scalars[:2048]
        return a.ctypes.data

    def compute_type(self, atype: int, btype: int, ctype: int, tf32: bool = False) -> int:
        """cuBLAS compute type for these data types: FP32 (strict), or FP32 with TF32 tensor cores
        allowed where `tf32` (float32 operands only: TF32 is a mode of FP32 GEMMs)."""
        if not tf32:
            return self._cb.ComputeType.COMPUTE_32F
        if not atype == btype == ctype == CUDA_R_32F:
            raise ValueError("TF32 applies to float32 GEMMs only (A, B and C float32)")
        return self._cb.ComputeType.COMPUTE_32F_FAST_TF32

    def gemm_raw(self, transa: bool, transb: bool, m: int, n: int, k: int, a: int, atype: int, lda: int,
                 b: int, btype: int, ldb: int, c: int, ctype: int, ldc: int, alpha: float = 1.0,
                 beta: float = 0.0, *, tf32: bool = False) -> None:
        """Column-major GEMM with FP32 accumulation (pointers as ints): cublasSgemm for float32,
        cublasGemmEx otherwise, or for float32 with `tf32` (COMPUTE_32F_FAST_TF32)."""
        cb = self._cb
        ta = cb.Operation.T if transa else cb.Operation.N
        tb = cb.Operation.T if transb else cb.Operation.N
        compute = self.compute_type(atype, btype, ctype, tf32)
        if atype == btype == ctype == CUDA_R_32F and not tf32:
            cb.sgemm(self.handle, ta, tb, m, n, k, self._scalar(alpha), a, lda, b, ldb, self._scalar(beta), c, ldc)
        else:
            cb.gemm_ex(self.handle, ta, tb, m, n, k, self._scalar(alpha), a, atype, lda, b, btype, ldb,
                       self._scalar(beta), c, ctype, ldc, compute, -1)

    def gemm(self, A: DeviceArray, B: DeviceArray, C: DeviceArray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, tf32: bool = False) -> None:
        # Row-major C (M x N) is column-major C^T; C^T = op(B)^T op(A)^T, so swap the operands.
        ra, ca = A.shape[-2:]
        rb, cb_ = B.shape[-2:]
        M, K = (ca, ra) if trans_a else (ra, ca)
        K2, N = (cb_, rb) if trans_b else (rb, cb_)
        if K != K2 or C.shape[-2:] != (M, N):
            raise ValueError(f"gemm shapes: op(A) {M}x{K}, op(B) {K2}x{N}, C {C.shape}")
        if A.dtype != B.dtype:
            raise TypeError("gemm: A and B must share a dtype")
        self.gemm_raw(trans_b, trans_a, N, M, K, B.ptr, _DT[B.dtype], cb_, A.ptr, _DT[A.dtype], ca,
                      C.ptr, _DT[C.dtype], N, alpha, beta, tf32=tf32)

    sgemm = gemm  # float32 operands pick cublasSgemm (cublasGemmEx, TF32 compute, with tf32=True)
    hgemm = gemm  # float16 operands pick cublasGemmEx (FP16 in, FP32 accumulate)

    def gemm_strided_batched(self, A: DeviceArray, B: DeviceArray, C: DeviceArray, *, trans_a: bool = False,
                             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0,
                             tf32: bool = False) -> None:
        """Batched row-major gemm over the leading axis of 3-D A, B, C (A or B may be 2-D: shared)."""
        cb = self._cb
        nb = C.shape[0]
        ra, ca = A.shape[-2:]
        rb, cb_ = B.shape[-2:]
        M, K = (ca, ra) if trans_a else (ra, ca)
        K2, N = (cb_, rb) if trans_b else (rb, cb_)
        if K != K2 or C.shape[1:] != (M, N):
            raise ValueError(f"gemm_strided_batched shapes: op(A) {M}x{K}, op(B) {K2}x{N}, C {C.shape}")
        sa = ra * ca if A.ndim == 3 else 0
        sb = rb * cb_ if B.ndim == 3 else 0
        ta = cb.Operation.T if trans_b else cb.Operation.N
        tb = cb.Operation.T if trans_a else cb.Operation.N
        compute = self.compute_type(_DT[A.dtype], _DT[B.dtype], _DT[C.dtype], tf32)
        cb.gemm_strided_batched_ex(
            self.handle, ta, tb, N, M, K, self._scalar(alpha), B.ptr, _DT[B.dtype], cb_, sb, A.ptr, _DT[A.dtype],
            ca, sa, self._scalar(beta), C.ptr, _DT[C.dtype], N, M * N, nb, compute, -1)

    def close(self) -> None:
        if self.handle:
            self._cb.destroy(self.handle)
            self.handle = 0

