"""Engine checks that need no GPU (CI): every kernel compiles through NVRTC for sm_80 and sm_90,
gpu_status answers without raising, doctor reports on any machine."""

from __future__ import annotations

import pytest

from tts_desktop.engine import compile as cc
from tts_desktop.engine.doctor import doctor_report, format_report
from tts_desktop.engine.runtime import gpu_status

nvrtc = pytest.importorskip("cuda.core", reason="cuda-core (the 'gpu' extra) is not installed")
if cc.nvrtc_version() is None:
    pytest.skip("NVRTC cannot be loaded (nvidia-cuda-nvrtc missing)", allow_module_level=True)

KERNELS = [p.name for p in cc.kernel_files()]


def test_kernels_exist():
    assert "decoder.cu" in KERNELS


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_compiles(name, arch):
    obj = cc.compile_cuda([name], arch)
    assert len(obj.code) > 1000


@pytest.mark.parametrize("half", [0, 1])
def test_decoder_compiles_at_reduced_sizes(half):
    # the sizes tests/gpu/test_decoder_gpu.py uses
    d = dict(DEC_HALF=half, N_MEL=80, PRENET=32, ENC=128, ATT_RNN=64, DEC_RNN=96, ATT_DIM=32, LOC_F=8, LOC_K=7)
    assert len(cc.compile_cuda(["decoder.cu"], "sm_90", d).code) > 1000


def test_bad_source_raises_compile_error():
    with pytest.raises(cc.CompileError, match="NVRTC"):
        cc.compile_cuda(['extern "C" __global__ void k() { undefined_thing(); }\n'], "sm_90")


def test_kernel_source_hash_is_stable_and_hex():
    h = cc.kernel_source_hash()
    assert h == cc.kernel_source_hash() and len(h) == 64 and int(h, 16) >= 0


def test_gpu_status_never_raises():
    ok, why = gpu_status()
    assert isinstance(ok, bool) and isinstance(why, str) and why


def test_doctor_report_compiles_every_kernel():
    rep = doctor_report("sm_80")
    assert rep["arch"] == "sm_80"
    assert {k["kernel"] for k in rep["kernels"]} == {p.name for p in cc.kernel_files()}
    bad = [k for k in rep["kernels"] if not k["ok"]]
    assert not bad, bad
    assert rep["ok"]
    text = format_report(rep)
    assert "decoder.cu" in text and "result" in text
    ok, _ = gpu_status()
    assert rep["gpu"]["ok"] == ok


def test_unsupported_dimensions_give_a_one_line_reason():
    """A voice whose sizes the decoder kernels cannot take fails to compile with a static_assert;
    the message users see (CLI, `--device auto` fallback note) is that assertion, not NVRTC's log."""
    from tts_desktop.engine.compile import CompileError, compile_cuda, headline

    with pytest.raises(CompileError) as info:
        compile_cuda(["decoder.cu"], "sm_90", defines={"ENC": 64})
    assert headline(info.value) == 'static assertion failed with "ENC multiple of 128"'
