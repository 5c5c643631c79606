"""NVIDIA's Tacotron2 / WaveGlow checkpoints -> (config, flat float32 state dict) -> voice folder.

The layouts met in the wild, all handled here:
- DeepLearningExamples train.py: {'epoch', 'config', 'state_dict', 'optimizer', ...}, keys
  prefixed 'module.' when trained with DistributedDataParallel;
- NVIDIA/tacotron2: {'iteration', 'state_dict', 'optimizer', 'learning_rate'};
- a bare state dict (any container, the legacy one included);
- a whole pickled module, e.g. {'model': <WaveGlow>}, the layout of NVIDIA's published WaveGlow
  checkpoints: its inert records (see checkpoint.PickledObject) are walked like
  torch's Module.state_dict() would;
- WaveGlow with weight norm still applied (weight_g / weight_v, or torch's newer
  parametrizations.weight.original0/1), folded here into plain weights;
- NVIDIA/waveglow's WN with one `cond_layer` for all layers, split into per-layer
  `cond_layers.I` as DeepLearningExamples has it.

Dimensions come from the checkpoint's `config` where it has one, otherwise from the tensor
shapes; either way every weight is then checked against the shape that config implies.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..text.symbols import SYMBOLS
from .checkpoint import CheckpointError, PickledObject, read_checkpoint
from .config import AudioConfig, Tacotron2Config, VoiceConfig, WaveGlowConfig
from .voice_files import save_voice, tacotron2_shapes, waveglow_shapes, weights_problem

__all__ = ["CheckpointLayoutError", "load_tacotron2", "load_waveglow", "import_voice"]

Weights = dict[str, np.ndarray]
Progress = Callable[[float, str], None]

_MAX_MODULE_DEPTH = 64


class CheckpointLayoutError(CheckpointError):
    """A readable checkpoint whose contents are not the expected model (wrong kind, keys, shapes)."""


# ---------------------------------------------------------------------------------------------
# public entry points


def load_tacotron2(path) -> tuple[Tacotron2Config, Weights, dict[str, Any]]:
    """(config, float32 weights under NVIDIA's key names, info) of a Tacotron2 checkpoint."""
    path = Path(path)
    raw, stored_config, layout = _state_dict_of(path)
    weights = _normalize_keys(raw, layout)
    _check_kind(path, weights, "Tacotron2")
    inferred = _infer_tacotron2(path, weights)
    config, config_source = _merge_config(path, inferred, stored_config, Tacotron2Config.from_dict,
                                          ("encoder_n_convolutions", "postnet_n_convolutions"))
    if config.symbols_embedding_dim != config.encoder_embedding_dim:
        raise CheckpointLayoutError(
            f"'{path.name}': symbols_embedding_dim {config.symbols_embedding_dim} differs from "
            f"encoder_embedding_dim {config.encoder_embedding_dim}; NVIDIA's model needs them equal")
    weights, ignored = _validated(path, weights, _shapes_or_error(path, tacotron2_shapes, config))
    return config, weights, _info(path, layout, config_source, ignored)


def load_waveglow(path) -> tuple[WaveGlowConfig, Weights, dict[str, Any]]:
    """(config, float32 weights with weight norm folded, info) of a WaveGlow checkpoint."""
    path = Path(path)
    raw, stored_config, layout = _state_dict_of(path)
    weights = _normalize_keys(raw, layout)
    _check_kind(path, weights, "WaveGlow")
    _split_single_cond_layer(weights, layout)
    inferred = _infer_waveglow(path, weights)
    config, config_source = _merge_config(path, inferred, stored_config, WaveGlowConfig.from_dict,
                                          ("n_flows", "wn_n_layers"))
    weights, ignored = _validated(path, weights, _shapes_or_error(path, waveglow_shapes, config))
    return config, weights, _info(path, layout, config_source, ignored)


def import_voice(tacotron2_path, waveglow_path, out_dir, name: str | None = None,
                 progress: Progress | None = None) -> Path:
    """Import a Tacotron2 and a WaveGlow checkpoint into the voice folder `out_dir` (created or
    replaced atomically; named `name`, by default the folder's name). Returns the folder.

    `progress(fraction, message)` is called as the work advances, if given.
    """
    out_dir = Path(out_dir)
    report = progress or (lambda fraction, message: None)
    report(0.0, f"Reading {Path(tacotron2_path).name}")
    tacotron2_config, tacotron2_weights, tacotron2_info = load_tacotron2(tacotron2_path)
    if tacotron2_config.n_symbols != len(SYMBOLS):
        raise CheckpointLayoutError(
            f"'{Path(tacotron2_path).name}' has {tacotron2_config.n_symbols} symbols; this app's "
            f"English symbol table has {len(SYMBOLS)}")
    report(0.35, f"Reading {Path(waveglow_path).name}")
    waveglow_config, waveglow_weights, waveglow_info = load_waveglow(waveglow_path)
    if waveglow_config.n_mel_channels != tacotron2_config.n_mel_channels:
        raise CheckpointLayoutError(
            f"the two checkpoints do not fit together: Tacotron2 makes {tacotron2_config.n_mel_channels} "
            f"mel channels, WaveGlow expects {waveglow_config.n_mel_channels}")
    report(0.7, "Writing the voice folder")
    config = VoiceConfig(
        name=name or out_dir.name,
        tacotron2=tacotron2_config,
        waveglow=waveglow_config,
        audio=AudioConfig(),
        symbols=SYMBOLS,
        provenance={
            "imported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tacotron2": tacotron2_info,
            "waveglow": waveglow_info,
        },
    )
    save_voice(out_dir, config, tacotron2_weights, waveglow_weights, dtype=np.float32)
    report(1.0, f"Voice '{config.name}' written")
    return out_dir


# ---------------------------------------------------------------------------------------------
# finding the state dict


def _state_dict_of(path: Path) -> tuple[Mapping[str, Any], dict | None, list[str]]:
    """The raw state dict in a checkpoint, its stored `config` (or None) and the layout words."""
    obj = read_checkpoint(path)
    if isinstance(obj, PickledObject):
        return _module_state_dict(path, obj), None, ["whole-module pickle"]
    if not isinstance(obj, Mapping):
        raise CheckpointLayoutError(f"'{path.name}' holds a {type(obj).__name__}, not a model or state dict")
    config = obj.get("config") if isinstance(obj.get("config"), Mapping) else None
    if isinstance(obj.get("state_dict"), Mapping):
        return obj["state_dict"], dict(config) if config else None, ["train.py checkpoint (state_dict)"]
    model = obj.get("model")
    if isinstance(model, PickledObject):
        return _module_state_dict(path, model), dict(config) if config else None, ["whole-module pickle {'model': ...}"]
    if isinstance(model, Mapping):
        return model, dict(config) if config else None, ["{'model': state_dict}"]
    if obj and sum(isinstance(v, np.ndarray) for v in obj.values()) >= len(obj) // 2:
        return obj, None, ["bare state_dict"]
    raise CheckpointLayoutError(
        f"'{path.name}' has neither a state_dict nor a model in it (top-level keys: {_preview(obj)})")


def _module_state_dict(path: Path, module: PickledObject) -> Weights:
    """What torch's Module.state_dict() would give, from a tree of inert module records."""
    found: Weights = {}
    seen: set[int] = set()

    def walk(record: PickledObject, prefix: str, depth: int) -> None:
        if depth > _MAX_MODULE_DEPTH or id(record) in seen:
            raise CheckpointLayoutError(f"'{path.name}': the pickled module tree is cyclic or absurdly deep")
        seen.add(id(record))
        state = record.state
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if isinstance(value, np.ndarray) and name not in non_persistent:
                    found[prefix + str(name)] = value
        for name, child in (state.get("_modules") or {}).items():
            if isinstance(child, PickledObject):
                walk(child, f"{prefix}{name}.", depth + 1)

    if not isinstance(module.state.get("_modules"), Mapping) and not isinstance(module.state.get("_parameters"), Mapping):
        raise CheckpointLayoutError(f"'{path.name}' holds a pickled {module.pickled_class} that is not a torch module")
    walk(module, "", 0)
    return found


def _preview(mapping: Mapping) -> str:
    keys = [str(k) for k in list(mapping)[:8]]
    return ", ".join(keys) + (", ..." if len(mapping) > 8 else "") if keys else "none"


# ---------------------------------------------------------------------------------------------
# normalizing keys


_WEIGHT_NORM = re.compile(r"^(.*)\.weight_g$")
_PARAMETRIZED = re.compile(r"^(.*)\.parametrizations\.weight\.original([01])$")


def _normalize_keys(raw: Mapping[str, Any], layout: list[str]) -> Weights:
    """Tensors only, 'module.' prefixes stripped, weight norm folded into plain weights."""
    weights = {str(k): v for k, v in raw.items() if isinstance(v, np.ndarray)}
    while weights and all(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items()}
        layout.append("'module.' prefixes (DistributedDataParallel)")
    folded = False
    for key in [k for k in weights if _PARAMETRIZED.match(k)]:
        base, index = _PARAMETRIZED.match(key).groups()
        weights[f"{base}.weight_{'gv'[int(index)]}"] = weights.pop(key)  # original0 = g, original1 = v
    for key in [k for k in weights if _WEIGHT_NORM.match(k)]:
        base = _WEIGHT_NORM.match(key).group(1)
        if f"{base}.weight_v" in weights:
            g, v = weights.pop(key), weights.pop(f"{base}.weight_v")
            weights[f"{base}.weight"] = _fold_weight_norm(g, v)
            folded = True
    if folded:
        layout.append("weight norm (folded)")
    return weights


def _fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """weight = g * v / ||v||, the norm over every axis along which g has size 1 (torch's
    weight_norm with dim=0 keeps one g per output channel: norm over all dims but 0)."""
    g64, v64 = g.astype(np.float64), v.astype(np.float64)
    if g64.ndim != v64.ndim or any(a not in (1, b) for a, b in zip(g64.shape, v64.shape)):
        raise CheckpointLayoutError(f"weight norm pair of shapes {g.shape} and {v.shape} does not fit")
    axes = tuple(i for i, n in enumerate(g64.shape) if n == 1)
    norm = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    # an all-zero v (a channel stored as zeros) has no direction: its weight is 0, not torch's 0/0
    return np.divide(g64 * v64, norm, out=np.zeros_like(v64), where=norm > 0).astype(np.float32)


def _split_single_cond_layer(weights: Weights, layout: list[str]) -> None:
    """NVIDIA/waveglow's WN conditions all its layers with one conv of 2*n_channels*n_layers
    outputs; layer i uses rows [2*C*i, 2*C*(i+1)). Split it into DLE's per-layer convs."""
    split = False
    for key in [k for k in weights if re.fullmatch(r"WN\.\d+\.cond_layer\.weight", k)]:
        wn = key[: -len(".cond_layer.weight")]
        n_layers = _count(weights, wn + ".in_layers.{}.weight")
        weight = weights.pop(key)
        bias = weights.pop(f"{wn}.cond_layer.bias", None)
        if n_layers == 0 or weight.shape[0] % (2 * n_layers) or (bias is not None and bias.shape[0] != weight.shape[0]):
            raise CheckpointLayoutError(f"{key} of shape {weight.shape} cannot be split over {n_layers} layers")
        rows = weight.shape[0] // n_layers
        for i in range(n_layers):
            weights[f"{wn}.cond_layers.{i}.weight"] = weight[i * rows:(i + 1) * rows]
            if bias is not None:
                weights[f"{wn}.cond_layers.{i}.bias"] = bias[i * rows:(i + 1) * rows]
        split = True
    if split:
        layout.append("single cond_layer per WN (NVIDIA/waveglow), split per layer")


def _check_kind(path: Path, weights: Weights, wanted: str) -> None:
    looks_like = ("Tacotron2" if "embedding.weight" in weights
                  else "WaveGlow" if "upsample.weight" in weights else None)
    if looks_like is None:
        raise CheckpointLayoutError(
            f"'{path.name}' is neither a Tacotron2 nor a WaveGlow checkpoint (weights: {_preview(weights)})")
    if looks_like != wanted:
        raise CheckpointLayoutError(f"'{path.name}' is a {looks_like} checkpoint, not {wanted}")


# ---------------------------------------------------------------------------------------------
# dimensions


def _shape(path: Path, weights: Weights, key: str, ndim: int) -> tuple[int, ...]:
    if key not in weights:
        raise CheckpointLayoutError(f"'{path.name}' lacks the weight {key}")
    shape = weights[key].shape
    if len(shape) != ndim:
        raise CheckpointLayoutError(f"'{path.name}': {key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _count(weights: Mapping[str, Any], pattern: str) -> int:
    """How many consecutive indices 0, 1, ... have `pattern.format(i)` among the keys."""
    n = 0
    while pattern.format(n) in weights:
        n += 1
    return n


def _infer_tacotron2(path: Path, w: Weights) -> Tacotron2Config:
    n_symbols, symbols_dim = _shape(path, w, "embedding.weight", 2)
    encoder_dim, _, encoder_kernel = _shape(path, w, "encoder.convolutions.0.0.conv.weight", 3)
    prenet_dim, _ = _shape(path, w, "decoder.prenet.layers.0.linear_layer.weight", 2)
    _, attention_rnn_dim = _shape(path, w, "decoder.attention_rnn.weight_hh", 2)
    attention_dim, _ = _shape(path, w, "decoder.attention_layer.query_layer.linear_layer.weight", 2)
    n_filters, _, location_kernel = _shape(
        path, w, "decoder.attention_layer.location_layer.location_conv.conv.weight", 3)
    _, decoder_rnn_dim = _shape(path, w, "decoder.decoder_rnn.weight_hh", 2)
    postnet_dim, n_mel, postnet_kernel = _shape(path, w, "postnet.convolutions.0.0.conv.weight", 3)
    mel_out, _ = _shape(path, w, "decoder.linear_projection.linear_layer.weight", 2)
    if mel_out % n_mel:
        raise CheckpointLayoutError(
            f"'{path.name}': the decoder projects to {mel_out} values, not a multiple of {n_mel} mel channels")
    return Tacotron2Config(
        n_mel_channels=n_mel, n_symbols=n_symbols, symbols_embedding_dim=symbols_dim,
        encoder_kernel_size=encoder_kernel,
        encoder_n_convolutions=_count(w, "encoder.convolutions.{}.0.conv.weight"),
        encoder_embedding_dim=encoder_dim, attention_rnn_dim=attention_rnn_dim, attention_dim=attention_dim,
        attention_location_n_filters=n_filters, attention_location_kernel_size=location_kernel,
        n_frames_per_step=mel_out // n_mel, decoder_rnn_dim=decoder_rnn_dim, prenet_dim=prenet_dim,
        postnet_embedding_dim=postnet_dim, postnet_kernel_size=postnet_kernel,
        postnet_n_convolutions=_count(w, "postnet.convolutions.{}.0.conv.weight"),
    )


def _infer_waveglow(path: Path, w: Weights) -> WaveGlowConfig:
    n_mel = _shape(path, w, "upsample.weight", 3)[0]
    n_flows = _count(w, "convinv.{}.conv.weight")
    if n_flows == 0:
        raise CheckpointLayoutError(f"'{path.name}' lacks the weight convinv.0.conv.weight")
    sizes = [_shape(path, w, f"convinv.{k}.conv.weight", 3)[0] for k in range(n_flows)]
    # Channels leave the flow every n_early_every flows, n_early_size at a time.
    drops = [k for k in range(1, n_flows) if sizes[k] != sizes[k - 1]]
    early_every = drops[0] if drops else n_flows
    early_size = sizes[drops[0] - 1] - sizes[drops[0]] if drops else 0
    n_channels = _shape(path, w, "WN.0.start.weight", 3)[0]
    kernel = _shape(path, w, "WN.0.in_layers.0.weight", 3)[2]
    return WaveGlowConfig(
        n_mel_channels=n_mel, n_flows=n_flows, n_group=sizes[0], n_early_every=early_every,
        n_early_size=early_size, wn_n_layers=_count(w, "WN.0.in_layers.{}.weight"),
        wn_kernel_size=kernel, wn_n_channels=n_channels,
    )


def _merge_config(path: Path, inferred, stored: dict | None, from_dict, counts: tuple[str, ...]):
    """The stored config where the checkpoint has one (its values win, and are then checked
    against the tensors), the inferred dimensions for anything it leaves out.

    Layer counts are checked first: they bound loops, and a config is as untrusted as the file.
    """
    if not stored:
        return inferred, "tensor shapes"
    given = dataclasses.asdict(from_dict(stored))
    stated = {k for k in given if k in stored or _nested_key_given(k, stored)}
    merged = type(inferred)(**{k: (given[k] if k in stated else v) for k, v in dataclasses.asdict(inferred).items()})
    for name in counts:
        if getattr(merged, name) != getattr(inferred, name):
            raise CheckpointLayoutError(
                f"'{path.name}': its config says {name} = {getattr(merged, name)!r} but it holds weights "
                f"for {getattr(inferred, name)}")
    return merged, "checkpoint config"


def _nested_key_given(field_name: str, stored: Mapping) -> bool:
    """WaveGlow's config nests wn_* under WN_config as n_layers / kernel_size / n_channels."""
    nested = stored.get("WN_config")
    return field_name.startswith("wn_") and isinstance(nested, Mapping) and field_name[3:] in nested


def _shapes_or_error(path: Path, table, config):
    try:
        return table(config)
    except ValueError as err:
        raise CheckpointLayoutError(f"'{path.name}': {err}") from None


def _validated(path: Path, weights: Weights, expected: dict[str, tuple[int, ...]]) -> tuple[Weights, list[str]]:
    """The expected weights as contiguous float32, or an error naming the file and the key."""
    problem = weights_problem(weights, expected)
    if problem:
        raise CheckpointLayoutError(f"'{path.name}': {problem}")
    ignored = sorted(k for k in weights if k not in expected and not k.endswith("num_batches_tracked"))
    out = {k: np.ascontiguousarray(weights[k], dtype=np.float32) for k in expected}
    for key, value in out.items():  # a damaged or diverged checkpoint would only ever speak NaN
        if not np.isfinite(value).all():
            raise CheckpointLayoutError(f"'{path.name}': the weight {key} holds NaN or infinite values")
    return out, ignored


def _info(path: Path, layout: list[str], config_source: str, ignored: list[str]) -> dict[str, Any]:
    return {"file": path.name, "sha256": _sha256(path), "layout": ", ".join(layout),
            "config_from": config_source, "ignored_keys": ignored}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
