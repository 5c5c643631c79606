"""`tts-desktop bench` on the CPU: the statistics block, the JSON record, NVIDIA's interval rule."""

from __future__ import annotations

import json

import numpy as np

from tts_desktop.bench import BenchResult, format_block, format_ratios
from tts_desktop.cli.main import main


def test_intervals_follow_nvidias_definition():
    lat = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 1.0]
    r = BenchResult("x", latencies=lat, mels=[100] * 10, audio_seconds=[1.0] * 10, batch=4)
    s = r.stats()
    # NVIDIA: max(sorted[:int(n*q)]): the 5th, 9th, 9th and 9th fastest of 10 runs
    assert (s["latency_p50_s"], s["latency_p90_s"], s["latency_p95_s"], s["latency_p99_s"]) == (0.5, 0.9, 0.9, 0.9)
    assert np.isclose(s["avg_latency_s"], 0.55) and np.isclose(s["rtf"], 1 / 0.55)
    assert np.isclose(s["aggregate_audio_s_per_s"], 4 / 0.55)
    block = format_block(r)
    for line in ("avg latency (s) = 0.550000", "latency interval 99% (s) = 0.900000",
                 "average mels generated = 100", "aggregate audio seconds per second"):
        assert line in block
    faster = BenchResult("y", latencies=[0.055] * 3, mels=[100] * 3, audio_seconds=[1.0] * 3, batch=4)
    assert "speed-up (avg latency) = 10.00x" in format_ratios(faster, r)
    assert "precision" not in block  # only said when known


def test_tf32_precision_is_named_in_the_block():
    from tts_desktop.api import precision_label

    r = BenchResult("tts-desktop GPU fp32 (TF32 tensor-core GEMMs)", latencies=[0.05] * 2, mels=[580] * 2,
                    audio_seconds=[6.7] * 2, batch=1, precision=precision_label("fp32", tf32=True))
    lines = format_block(r).splitlines()
    assert lines[1] == "precision = fp32 (TF32 tensor-core GEMMs)"
    strict = BenchResult("x", latencies=[0.1], mels=[580], audio_seconds=[6.7], batch=1, precision="fp32")
    assert format_block(strict).splitlines()[1] == "precision = fp32"


def test_bench_cpu_on_a_small_voice(tmp_path, golden_dir, capsys, monkeypatch):
    from tts_desktop.model.importer import import_voice

    monkeypatch.setenv("TTS_DESKTOP_LSTM_TC", "0")  # an engine switch: recorded with the result
    voice = import_voice(golden_dir / "tacotron2_dle.pt", golden_dir / "waveglow_dle.pt", tmp_path / "v")
    save = tmp_path / "results"
    code = main(["bench", "--device", "cpu", "--voice", str(voice), "--frames", "12", "--runs", "3",
                 "--warmup", "1", "--batch", "2", "--save", str(save)])
    assert code == 0
    out = capsys.readouterr().out
    assert "Performed 3 runs." in out and "batch size = 2" in out
    assert "average mels generated = 12" in out
    assert all(stage in out for stage in ("encoder", "decoder", "postnet", "waveglow", "denoiser"))
    (record_file,) = save.iterdir()
    record = json.loads(record_file.read_text())
    assert record["device"] == "cpu" and record["frames_forced"] == 12
    assert "-cpu-fp32-b2" in record_file.name       # the CPU reference is fp32 whatever --precision says
    # NVIDIA's phrase read as the app reads it: with the final period it lacks (without it the
    # demo voice's stop token never fires)
    assert record["text"].startswith("The forms of printed letters") and record["text"].endswith("to the.")
    assert record["precision"] == "fp32" and record["tf32"] is False and "precision = fp32" in out
    assert len(record["ours"]["latencies_s"]) == 3
    assert record["settings"]["TTS_DESKTOP_LSTM_TC"] == "0" and "settings = " in out and "TTS_DESKTOP_LSTM_TC=0" in out
    assert np.isclose(record["ours"]["avg_audio_s"], 12 * 256 / 22050)
