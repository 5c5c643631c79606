"""How fast can WaveGlow's per-layer GEMM shape go on this GPU? (an experiment, run on the device:
torch is there). FP16 in, FP32 accumulate, as the engine's cublasGemmEx call: Y (rows x 512) =
X (rows x 1408) @ W^T, at batch 1 (18,560 rows) and a batch-32 group (3 x 580 frames = 55,680 rows),
against torch's matmul (cuBLAS / cuBLASLt heuristics) in several layouts, and a large square GEMM
for the device's ceiling."""

import torch


def bench(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
for rows in (18560, 55680):
    x = torch.randn(rows, 1408, device="cuda", dtype=torch.float16)
    w = torch.randn(512, 1408, device="cuda", dtype=torch.float16)
    wt = w.t().contiguous()
    y = torch.empty(rows, 512, device="cuda", dtype=torch.float16)
    fl = 2 * rows * 512 * 1408
    for name, fn in {"x @ w.T (TN, as the engine)": lambda: torch.mm(x, w.t(), out=y),
                     "x @ wt (NN)": lambda: torch.mm(x, wt, out=y),
                     "(w @ x.T).T": lambda: torch.mm(w, x.t()),
                     "addmm with bias (cublasLt epilogue)": lambda: torch.addmm(torch.zeros(512, device="cuda",
                                                                                             dtype=torch.float16), x, w.t())}.items():
        ms = bench(fn)
        print(f"rows {rows:6d} {name:40s} {ms * 1e3:8.1f} us {fl / ms / 1e9:7.1f} TFLOP/s")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
ms = bench(lambda: a @ a, 10)
print(f"8192^3 fp16: {ms:.2f} ms {2 * 8192 ** 3 / ms / 1e9:.0f} TFLOP/s")
