"""The voice folder: `voice.json` + `tacotron2.safetensors` + `waveglow.safetensors`.

This module owns what a voice's weights must look like: the tensor names (NVIDIA's state-dict
keys, see docs/ARCHITECTURE.md) and each tensor's shape as a function of the config
(`tacotron2_shapes`, `waveglow_shapes`). The importer checks checkpoints against the same tables,
so a folder written by `save_voice` always loads.

Writes are atomic: the folder is built beside its destination under a temporary name, flushed to
disk, and renamed into place, so a crash or an error leaves either the old voice or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
from safetensors.numpy import load_file, save_file

from tts_desktop.atomic import new_dir_mode, new_file_mode

from .config import Tacotron2Config, VoiceConfig, WaveGlowConfig

__all__ = [
    "VoiceError", "VOICE_JSON", "TACOTRON2_FILE", "WAVEGLOW_FILE", "FORMAT_VERSION",
    "tacotron2_shapes", "waveglow_shapes", "weights_problem",
    "save_voice", "load_voice", "voice_size_bytes", "is_voice_folder",
]

VOICE_JSON = "voice.json"
TACOTRON2_FILE = "tacotron2.safetensors"
WAVEGLOW_FILE = "waveglow.safetensors"
FORMAT_VERSION = 1
WAVEGLOW_UPSAMPLE_KERNEL = 1024  # NVIDIA's ConvTranspose1d(n_mel, n_mel, 1024, stride=256)


class VoiceError(Exception):
    """A voice folder that is missing, incomplete, corrupt, or cannot be written."""


Shapes = dict[str, tuple[int, ...]]


def tacotron2_shapes(c: Tacotron2Config) -> Shapes:
    """Every Tacotron2 weight of NVIDIA's model with its shape, in state-dict order."""
    dims = [v for v in c.to_dict().values() if isinstance(v, int) and not isinstance(v, bool)]
    if min(dims) <= 0 or c.encoder_embedding_dim % 2:
        raise ValueError(f"impossible Tacotron2 dimensions {c}")
    E, A, D, P = c.encoder_embedding_dim, c.attention_rnn_dim, c.decoder_rnn_dim, c.prenet_dim
    mel_out = c.n_mel_channels * c.n_frames_per_step
    shapes: Shapes = {"embedding.weight": (c.n_symbols, c.symbols_embedding_dim)}
    for i in range(c.encoder_n_convolutions):
        shapes.update(_conv_batchnorm(f"encoder.convolutions.{i}", E, E, c.encoder_kernel_size))
    half = E // 2  # the bidirectional LSTM gives each direction half the channels
    for suffix in ("l0", "l0_reverse"):
        shapes[f"encoder.lstm.weight_ih_{suffix}"] = (4 * half, E)
        shapes[f"encoder.lstm.weight_hh_{suffix}"] = (4 * half, half)
        shapes[f"encoder.lstm.bias_ih_{suffix}"] = (4 * half,)
        shapes[f"encoder.lstm.bias_hh_{suffix}"] = (4 * half,)
    shapes["decoder.prenet.layers.0.linear_layer.weight"] = (P, mel_out)
    shapes["decoder.prenet.layers.1.linear_layer.weight"] = (P, P)
    shapes.update(_lstm_cell("decoder.attention_rnn", P + E, A))
    att = "decoder.attention_layer"
    shapes[f"{att}.query_layer.linear_layer.weight"] = (c.attention_dim, A)
    shapes[f"{att}.memory_layer.linear_layer.weight"] = (c.attention_dim, E)
    shapes[f"{att}.v.linear_layer.weight"] = (1, c.attention_dim)
    shapes[f"{att}.location_layer.location_conv.conv.weight"] = (
        c.attention_location_n_filters, 2, c.attention_location_kernel_size)
    shapes[f"{att}.location_layer.location_dense.linear_layer.weight"] = (
        c.attention_dim, c.attention_location_n_filters)
    shapes.update(_lstm_cell("decoder.decoder_rnn", A + E, D))
    shapes["decoder.linear_projection.linear_layer.weight"] = (mel_out, D + E)
    shapes["decoder.linear_projection.linear_layer.bias"] = (mel_out,)
    shapes["decoder.gate_layer.linear_layer.weight"] = (c.n_frames_per_step, D + E)
    shapes["decoder.gate_layer.linear_layer.bias"] = (c.n_frames_per_step,)
    n = c.postnet_n_convolutions
    for i in range(n):
        c_in = c.n_mel_channels if i == 0 else c.postnet_embedding_dim
        c_out = c.n_mel_channels if i == n - 1 else c.postnet_embedding_dim
        shapes.update(_conv_batchnorm(f"postnet.convolutions.{i}", c_in, c_out, c.postnet_kernel_size))
    return shapes


def _conv_batchnorm(prefix: str, c_in: int, c_out: int, kernel: int) -> Shapes:
    """NVIDIA's Sequential(ConvNorm, BatchNorm1d), without BatchNorm's num_batches_tracked."""
    shapes: Shapes = {f"{prefix}.0.conv.weight": (c_out, c_in, kernel), f"{prefix}.0.conv.bias": (c_out,)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.1.{name}"] = (c_out,)
    return shapes


def _lstm_cell(prefix: str, n_in: int, n_hidden: int) -> Shapes:
    return {f"{prefix}.weight_ih": (4 * n_hidden, n_in), f"{prefix}.weight_hh": (4 * n_hidden, n_hidden),
            f"{prefix}.bias_ih": (4 * n_hidden,), f"{prefix}.bias_hh": (4 * n_hidden,)}


def waveglow_shapes(c: WaveGlowConfig) -> Shapes:
    """Every WaveGlow weight (weight norm folded) with its shape, in state-dict order."""
    if min(c.n_mel_channels, c.n_flows, c.n_group, c.n_early_every, c.wn_n_layers,
           c.wn_n_channels, c.wn_kernel_size) <= 0 or c.n_early_size < 0:
        raise ValueError(f"impossible WaveGlow dimensions {c}")
    M, C, L = c.n_mel_channels, c.wn_n_channels, c.wn_n_layers
    convinv: Shapes = {}
    shapes: Shapes = {"upsample.weight": (M, M, WAVEGLOW_UPSAMPLE_KERNEL), "upsample.bias": (M,)}
    n_half, n_remaining = c.n_group // 2, c.n_group
    for k in range(c.n_flows):
        if k > 0 and k % c.n_early_every == 0:  # some channels leave the flow early
            n_half -= c.n_early_size // 2
            n_remaining -= c.n_early_size
        convinv[f"convinv.{k}.conv.weight"] = (n_remaining, n_remaining, 1)
        wn = f"WN.{k}"
        for i in range(L):
            shapes[f"{wn}.in_layers.{i}.weight"] = (2 * C, C, c.wn_kernel_size)
            shapes[f"{wn}.in_layers.{i}.bias"] = (2 * C,)
        for i in range(L):
            res_skip = 2 * C if i < L - 1 else C  # the last layer has no residual half
            shapes[f"{wn}.res_skip_layers.{i}.weight"] = (res_skip, C, 1)
            shapes[f"{wn}.res_skip_layers.{i}.bias"] = (res_skip,)
        for i in range(L):
            shapes[f"{wn}.cond_layers.{i}.weight"] = (2 * C, M * c.n_group, 1)
            shapes[f"{wn}.cond_layers.{i}.bias"] = (2 * C,)
        shapes[f"{wn}.start.weight"] = (C, n_half, 1)
        shapes[f"{wn}.start.bias"] = (C,)
        shapes[f"{wn}.end.weight"] = (2 * n_half, C, 1)
        shapes[f"{wn}.end.bias"] = (2 * n_half,)
    shapes.update(convinv)  # NVIDIA's module order: upsample, WN, convinv
    return shapes


def weights_problem(weights: Mapping[str, np.ndarray], expected: Shapes) -> str | None:
    """The first way the weights differ from the expected table (a missing key, a wrong shape
    or a non-float tensor), as a sentence naming the key; None when they match."""
    for key, shape in expected.items():
        if key not in weights:
            return f"the weight {key} is missing"
        value = weights[key]
        if tuple(np.shape(value)) != shape:
            return f"the weight {key} has shape {tuple(np.shape(value))}, expected {shape}"
        if not np.issubdtype(np.asarray(value).dtype, np.floating):
            return f"the weight {key} is {np.asarray(value).dtype}, expected floating point"
    return None


# ---------------------------------------------------------------------------------------------
# writing


def is_voice_folder(path) -> bool:
    return (Path(path) / VOICE_JSON).is_file()


def save_voice(directory, config: VoiceConfig, tacotron2_weights: Mapping[str, np.ndarray],
               waveglow_weights: Mapping[str, np.ndarray], dtype=np.float32) -> Path:
    """Write a voice folder atomically; replaces an existing voice folder, nothing else.

    The weights must match the config's shape tables (extra keys are not written). `dtype` is
    float32 (an imported voice) or float16 (half the size; loaders widen it back to float32).
    """
    directory = Path(directory)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise VoiceError(f"voice weights are stored as float32 or float16, not {dtype}")
    try:
        tables = ((TACOTRON2_FILE, tacotron2_weights, tacotron2_shapes(config.tacotron2)),
                  (WAVEGLOW_FILE, waveglow_weights, waveglow_shapes(config.waveglow)))
    except ValueError as err:
        raise VoiceError(f"cannot write a voice: {err}") from None
    for file_name, weights, expected in tables:
        problem = weights_problem(weights, expected)
        if problem:
            raise VoiceError(f"cannot write {file_name}: {problem}")
    if directory.exists() and not (is_voice_folder(directory) or _is_empty_dir(directory)):
        raise VoiceError(f"refusing to overwrite '{directory}': it exists and is not a voice folder")

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
    try:
        for file_name, weights, expected in tables:
            tensors = {key: np.ascontiguousarray(weights[key], dtype=dtype) for key in expected}
            save_file(tensors, str(staging / file_name),
                      metadata={"format": "tts-desktop-voice", "format_version": str(FORMAT_VERSION)})
            _fsync_file(staging / file_name)
        # weights_dtype tells `tts-desktop voices` the storage precision without opening the weights
        meta = {**config.to_dict(), "weights_dtype": dtype.name}
        text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
        (staging / VOICE_JSON).write_text(text, encoding="utf-8")
        _fsync_file(staging / VOICE_JSON)
        file_mode = new_file_mode()  # mkdtemp's 0o700 and the writers' modes: as a plain copy would be
        for f in staging.iterdir():
            os.chmod(f, file_mode)
        os.chmod(staging, new_dir_mode())
        _fsync_dir(staging)
        _move_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(directory.parent)
    return directory


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _move_into_place(staging: Path, directory: Path) -> None:
    """Rename the finished folder onto its name; an old voice there is set aside, then removed."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    if _is_empty_dir(directory):
        directory.rmdir()
        os.replace(staging, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    old.rmdir()
    os.replace(directory, old)
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(old, directory)  # put the old voice back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; folders cannot be opened for fsync on Windows, where it is skipped."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# reading


def load_voice(directory) -> tuple[VoiceConfig, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(config, tacotron2 weights, waveglow weights) of a voice folder, weights as float32."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VoiceError(f"'{directory}' is not a voice folder: it does not exist or is not a folder")
    config = _read_config(directory)
    try:
        tacotron2_expected = tacotron2_shapes(config.tacotron2)
        waveglow_expected = waveglow_shapes(config.waveglow)
    except ValueError as err:
        raise VoiceError(f"'{directory / VOICE_JSON}' is unusable: {err}") from None
    tacotron2 = _read_weights(directory, TACOTRON2_FILE, tacotron2_expected)
    waveglow = _read_weights(directory, WAVEGLOW_FILE, waveglow_expected)
    return config, tacotron2, waveglow


def _read_config(directory: Path) -> VoiceConfig:
    path = directory / VOICE_JSON
    if not path.is_file():
        raise VoiceError(f"'{directory}' is not a voice folder: {VOICE_JSON} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        version = int(data.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise VoiceError(f"'{directory}' is a voice of format {version}; this version of "
                             f"TTS Desktop reads format {FORMAT_VERSION}: update the app")
        config = VoiceConfig.from_dict(data)
    except VoiceError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise VoiceError(f"'{path}' is unreadable: {err}") from None
    if config.symbols and len(config.symbols) != config.tacotron2.n_symbols:
        raise VoiceError(f"'{path}' lists {len(config.symbols)} symbols but the model has "
                         f"{config.tacotron2.n_symbols}")
    return config


def _read_weights(directory: Path, file_name: str, expected: Shapes) -> dict[str, np.ndarray]:
    path = directory / file_name
    if not path.is_file():
        raise VoiceError(f"the voice '{directory}' is incomplete: {file_name} is missing")
    try:
        weights = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError, or OSError/ValueError
        raise VoiceError(f"'{path}' is corrupt: {err}") from None
    problem = weights_problem(weights, expected)
    if problem:
        raise VoiceError(f"'{path}' does not match voice.json: {problem}")
    return {key: weights[key].astype(np.float32, copy=False) for key in expected}


def voice_size_bytes(directory) -> int:
    """Disk size of a voice folder: the sum of its files' sizes."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
