"""The command line end to end, through real subprocesses where exit codes and output matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts_desktop.cli.main import main


@pytest.fixture(scope="session")
def voice_dir(golden_dir, tmp_path_factory) -> Path:
    from tts_desktop.model.importer import import_voice

    out = tmp_path_factory.mktemp("voices") / "golden-small"
    import_voice(golden_dir / "tacotron2_dle.pt", golden_dir / "waveglow_dle.pt", out, name="golden-small")
    return out


def cli(*args: str, stdin: str | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "tts_desktop.cli.main", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_commands_and_exit_codes():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("speak", "export", "import", "text", "voices", "doctor", "bench", "exit codes"):
        assert word in r.stdout


def test_text_prints_sentences_and_ids():
    r = cli("text", "Dr. Smith paid $3.50. Then he left")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines == ["doctor smith paid three dollars, fifty cents.", "then he left."]
    r = cli("text", "--ids", "Hi.")
    ids = json.loads(r.stdout.strip().splitlines()[-1])
    from tts_desktop.text import SYMBOLS

    assert "".join(SYMBOLS[i] for i in ids) == "hi."


def test_text_from_stdin_and_empty_text_error():
    r = cli("text", stdin="Hello world")
    assert r.returncode == 0 and r.stdout.strip() == "hello world."
    r = cli("text", "   \n ")
    assert r.returncode == 3
    assert "empty" in r.stderr and "Traceback" not in r.stderr


def test_speak_writes_wav_and_dumps(voice_dir, tmp_path):
    out = tmp_path / "hello.wav"
    dump = tmp_path / "dump"
    r = cli("speak", "Hello there. How are you?", "-o", str(out), "--voice", str(voice_dir), "--device",
            "cpu", "--seed", "1", "--max-decoder-steps", "40", "--no-early-stop", "--dump", str(dump))
    assert r.returncode == 0, r.stderr
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    mel, alignment, gate, audio = (np.load(dump / f"{n}.npy") for n in ("mel", "alignment", "gate", "audio"))
    assert mel.shape[0] == 80 and mel.shape[1] == gate.shape[0] == alignment.shape[0]
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert info.frames == len(audio)
    # two sentences of 40 forced frames: 256 samples per frame plus one 0.2 s pause between them
    assert mel.shape[1] == 80
    assert len(audio) == mel.shape[1] * 256 + round(0.2 * 22050)


def test_speak_deterministic_with_no_prenet_dropout(voice_dir, tmp_path):
    outs = []
    for i in range(2):
        d = tmp_path / f"d{i}"
        r = cli("speak", "Printing, in the only sense.", "-o", str(tmp_path / f"{i}.wav"), "--voice",
                str(voice_dir), "--device", "cpu", "--no-prenet-dropout", "--sigma", "0",
                "--max-decoder-steps", "30", "--no-early-stop", "--dump", str(d))
        assert r.returncode == 0, r.stderr
        outs.append(np.load(d / "mel.npy"))
    assert outs[0].shape == (80, 30)
    assert np.array_equal(outs[0], outs[1])


def test_speak_errors_are_one_line(voice_dir, tmp_path):
    r = cli("speak", "", "-o", str(tmp_path / "x.wav"), "--voice", str(voice_dir), "--device", "cpu")
    assert r.returncode == 3 and "empty" in r.stderr and "Traceback" not in r.stderr
    r = cli("speak", "Hi.", "-o", str(tmp_path / "x.wav"), "--voice", str(tmp_path / "nope"), "--device", "cpu")
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "nope" in r.stderr
    (tmp_path / "not_a_voice").mkdir()
    r = cli("speak", "Hi.", "-o", str(tmp_path / "x.wav"), "--voice", str(tmp_path / "not_a_voice"))
    assert r.returncode == 3 and "not a voice folder" in r.stderr
    r = cli("speak", "Hi.", "-o", str(tmp_path / "x.mp3"), "--voice", str(voice_dir), "--device", "cpu",
            "--max-decoder-steps", "5")
    assert r.returncode == 3 and ".wav or .flac" in r.stderr
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("argv", [
    ["speak", "Hi.", "-o", "{tmp}/x.wav", "--tf32"],  # --precision defaults to fp16
    ["speak", "Hi.", "-o", "{tmp}/x.wav", "--device", "cuda", "--precision", "fp16", "--tf32"],
    ["export", "{tmp}/p.txt", "-o", "{tmp}/o", "--tf32"],
    ["bench", "--tf32", "--save", "{tmp}/o"],
    ["bench", "--precision", "fp16", "--tf32", "--device", "cpu", "--save", "{tmp}/o"],
])
def test_tf32_without_precision_fp32_is_a_one_line_usage_error(argv, tmp_path):
    (tmp_path / "p.txt").write_text("Hello.\n")
    r = cli(*[a.format(tmp=tmp_path) for a in argv])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "tts-desktop: --tf32 needs --precision fp32 (TF32 is a mode of the FP32 engine), not --precision fp16"]
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["speak", "bench"])
def test_tf32_with_the_cpu_reference_is_refused(command, tmp_path):
    argv = (["speak", "Hi.", "-o", str(tmp_path / "x.wav")] if command == "speak"
            else ["bench", "--save", str(tmp_path)])
    r = cli(*argv, "--device", "cpu", "--precision", "fp32", "--tf32")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["tts-desktop: --tf32 applies to the GPU engine only, not --device cpu"]


def test_tf32_flag_is_documented_and_accepted_with_fp32(voice_dir, tmp_path):
    for command in ("speak", "export", "bench"):
        r = cli(command, "--help")
        assert r.returncode == 0 and "--tf32" in r.stdout and "TF32" in r.stdout
    from tts_desktop.engine.runtime import gpu_status

    if gpu_status()[0]:
        return  # with a GPU, 'auto' would build a TF32 engine: tests/gpu covers that
    out = tmp_path / "x.wav"
    r = cli("speak", "Hi.", "-o", str(out), "--voice", str(voice_dir), "--precision", "fp32", "--tf32",
            "--max-decoder-steps", "5", "--no-early-stop")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "CPU (NumPy reference)" in r.stderr  # auto fell back; nothing claims TF32


def test_api_refuses_tf32_without_fp32():
    from tts_desktop.api import TF32_LABEL, Voice, precision_label
    from tts_desktop.backends import make_backend

    with pytest.raises(ValueError, match="FP32 engine only"):
        Voice.load("no-such-voice", device="cuda", precision="fp16", tf32=True)  # refused before the voice
    with pytest.raises(ValueError, match="FP32 engine only"):
        make_backend(None, None, None, None, device="cuda", precision="fp16", tf32=True)
    assert precision_label("fp32", True) == TF32_LABEL == "fp32 (TF32 tensor-core GEMMs)"
    assert precision_label("fp32") == "fp32" and precision_label("fp16") == "fp16"


def test_export_reference_phrases(voice_dir, data_dir, tmp_path):
    out = tmp_path / "wavs"
    r = cli("export", str(data_dir / "phrases.txt"), "-o", str(out), "--voice", str(voice_dir),
            "--device", "cpu", "--max-decoder-steps", "60", "--no-early-stop")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{i}.wav" for i in range(1, 9))
    for p in out.iterdir():
        assert sf.info(str(p)).frames == 60 * 256


def test_export_with_defaults_warns_about_an_immediate_stop(voice_dir, data_dir, tmp_path):
    # The golden voice has random weights: its stop token fires on the very first frame, as it
    # does in NVIDIA's code. Files are still written (empty) and the user is told why.
    out = tmp_path / "wavs"
    r = cli("export", str(data_dir / "phrases.txt"), "-o", str(out), "--voice", str(voice_dir), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.wav" for i in range(1, 9))
    assert "stop token fired on the first frame" in r.stderr


def test_export_reports_blank_and_failed_lines_and_continues(voice_dir, tmp_path):
    phrases = tmp_path / "p.txt"
    # line 2 blank; line 3 has no speakable symbol at all and must fail alone
    phrases.write_text("First line.\n\n\u2603\u2603\nFourth line.\n", encoding="utf-8")
    out = tmp_path / "o"
    r = cli("export", str(phrases), "-o", str(out), "--voice", str(voice_dir), "--device", "cpu",
            "--max-decoder-steps", "20", "--no-early-stop")
    assert r.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["1.wav", "4.wav"]
    assert "line 2: blank" in r.stderr and "line 3: FAILED" in r.stderr


def test_export_unreadable_file(tmp_path, voice_dir):
    r = cli("export", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o"), "--voice", str(voice_dir))
    assert r.returncode == 3 and "cannot read" in r.stderr
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    r = cli("export", str(bad), "-o", str(tmp_path / "o"), "--voice", str(voice_dir))
    assert r.returncode == 3 and "UTF-8" in r.stderr


def test_import_command_and_voices_listing(golden_dir, tmp_path):
    out = tmp_path / "user-voices" / "mine"
    r = cli("import", "--tacotron2", str(golden_dir / "tacotron2_legacy.pt"), "--waveglow",
            str(golden_dir / "waveglow_pickled.pt"), "-o", str(out), "--name", "mine")
    assert r.returncode == 0, r.stderr
    assert (out / "voice.json").is_file()
    r = cli("voices", env_extra={"TTS_DESKTOP_VOICES": str(out.parent)})
    assert r.returncode == 0 and "mine" in r.stdout and "MiB" in r.stdout


def test_import_refuses_hostile_file(tmp_path, golden_dir):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.")
    r = cli("import", "--tacotron2", str(evil), "--waveglow", str(golden_dir / "waveglow_dle.pt"),
            "-o", str(tmp_path / "v"))
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "evil.pt" in r.stderr
    assert not (tmp_path / "v").exists()


def test_main_in_process_no_gpu_with_cuda_device(voice_dir, tmp_path, capsys):
    from tts_desktop.engine.runtime import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is present: the no-GPU message cannot be shown here")
    code = main(["speak", "Hi.", "-o", str(tmp_path / "x.wav"), "--voice", str(voice_dir), "--device", "cuda"])
    assert code == 4
    assert "no usable GPU" in capsys.readouterr().err


def test_voices_download_from_a_local_mirror(server, tmp_path):
    from tts_desktop.download import BASE_URL_ENV

    env = {"TTS_DESKTOP_VOICES": str(tmp_path / "voices"), BASE_URL_ENV: server.url}
    r = cli("voices", "download", "nvidia-ljspeech", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "voices" / "nvidia-ljspeech" / "voice.json").is_file()
    r = cli("voices", env_extra=env)
    assert "nvidia-ljspeech" in r.stdout and "imported from" in r.stdout
    r = cli("voices", "download", "nonsense", env_extra=env)
    assert r.returncode == 2 and "unknown voice" in r.stderr


def test_voices_download_without_network(tmp_path):
    import socket

    from tts_desktop.download import BASE_URL_ENV

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"TTS_DESKTOP_VOICES": str(tmp_path / "voices"), BASE_URL_ENV: f"http://127.0.0.1:{port}/f"}
    r = cli("voices", "download", "nvidia-ljspeech", env_extra=env)
    assert r.returncode == 1 and "cannot reach 127.0.0.1" in r.stderr and "Traceback" not in r.stderr
