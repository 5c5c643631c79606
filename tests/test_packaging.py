"""A wheel (`pip install .`, not -e) carries the CUDA sources and the bundled voices and phrases
inside the package (setup.py), and the installed package finds them there: the kernels for the
GPU engine, the demo voice as the default voice, the benchmark phrase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_wheel_carries_kernels_and_resources_and_finds_them(tmp_path):
    # as a user's `pip install .` builds it: in an isolated environment with pyproject's build
    # requirements (this venv's own setuptools may be older than they ask)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path / "dist")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("tts_desktop-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        expected = {f"tts_desktop/kernels/{p.name}" for p in (REPO / "kernels").iterdir()
                    if p.suffix in (".cu", ".cuh")}
        expected |= {f"tts_desktop/{p.relative_to(REPO).as_posix()}" for p in (REPO / "resources").rglob("*")
                     if p.is_file()}
        assert expected <= names, sorted(expected - names)
        z.extractall(tmp_path / "site")
    # the unpacked wheel, not the checkout, on the path: where does it look?
    probe = ("import json, tts_desktop, tts_desktop.voices as v, tts_desktop.engine.compile as c, "
             "tts_desktop.bench as b; print(json.dumps([tts_desktop.__file__, str(v.find_voice(None)), "
             "str(c.KERNELS_DIR), str(b.DEFAULT_PHRASE)]))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "TTS_DESKTOP_VOICES": str(tmp_path / "no-user-voices")}
    env.pop("TTS_DESKTOP_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    package = tmp_path / "site" / "tts_desktop"
    init, voice, kernels, phrase = map(Path, json.loads(out.stdout))
    assert init == package / "__init__.py"
    assert voice == package / "resources" / "voices" / "demo"
    assert kernels == package / "kernels" and (kernels / "decoder.cu").is_file()
    assert phrase == package / "resources" / "phrases" / "benchmark_128.txt" and phrase.is_file()
