"""Copy the small golden model into `.fixtures/golden_small/` (git-ignored) so it can travel to a GPU
machine that has no ../shared: `python tests/gpu/prepare_fixtures.py` (needs torch, CPU is fine).

Writes NVIDIA's key names with weight norm folded (weight = g * v / ||v||, norm over all dims but
0) and the `module.` prefix stripped, as the voice files hold them, plus golden.npz and the configs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SRC = REPO.parent / "shared" / "golden" / "small"
DST = REPO / ".fixtures" / "golden_small"


def _flat(sd) -> dict[str, np.ndarray]:
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = v.detach().cpu().numpy().astype(np.float32)
    for k in [k for k in out if k.endswith(".weight_g")]:
        base = k[: -len("_g")]
        g, v = out.pop(k), out.pop(base + "_v")
        norm = np.sqrt((v.astype(np.float64) ** 2).reshape(v.shape[0], -1).sum(1)).reshape(g.shape)
        out[base] = (g * v / norm).astype(np.float32)
    return out


def main() -> int:
    import torch

    DST.mkdir(parents=True, exist_ok=True)
    for name in ("waveglow", "tacotron2"):
        ck = torch.load(SRC / f"{name}_dle.pt", map_location="cpu", weights_only=False)
        np.savez(DST / f"{name}.npz", **_flat(ck["state_dict"]))
        (DST / f"{name}_config.json").write_text(json.dumps(ck["config"], indent=1, default=str))
    shutil.copy(SRC / "golden.npz", DST / "golden.npz")
    print(f"wrote {DST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
