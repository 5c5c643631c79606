"""Small helpers shared by the encoder, postnet, WaveGlow and denoiser stages."""

from __future__ import annotations

import numpy as np

from .runtime import DeviceArray, GpuContext


def launch(ctx: GpuContext, kernel, grid, block, *args, shmem: int = 0, stream=None, cluster: int = 1) -> None:
    """ctx.launch with DeviceArrays passed as 64-bit integers: cuda.core 1.2.0 (the GPU machines'
    version) rejects ctypes.c_void_p kernel arguments, while NumPy scalars work on every version."""
    ctx.launch(kernel, grid, block, *(np.uint64(a.ptr) if isinstance(a, DeviceArray) else a for a in args),
               shmem=shmem, stream=stream, cluster=cluster)


def blocks(n: int, threads: int = 256) -> int:
    return max(1, (int(n) + threads - 1) // threads)
