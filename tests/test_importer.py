"""NVIDIA's checkpoint layouts -> (config, float32 weights), and the voice folder they become."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict

import numpy as np
import pytest

from tts_desktop.model import voice_files
from tts_desktop.model.checkpoint import CheckpointError
from tts_desktop.model.config import Tacotron2Config, VoiceConfig, WaveGlowConfig
from tts_desktop.model.importer import CheckpointLayoutError, import_voice, load_tacotron2, load_waveglow
from tts_desktop.model.voice_files import (
    VoiceError, load_voice, save_voice, tacotron2_shapes, voice_size_bytes, waveglow_shapes,
)
from tts_desktop.text.symbols import SYMBOLS


@pytest.fixture(scope="module")
def tacotron2(golden_dir):
    return load_tacotron2(golden_dir / "tacotron2_dle.pt")


@pytest.fixture(scope="module")
def waveglow(golden_dir):
    return load_waveglow(golden_dir / "waveglow_dle.pt")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _dimensions(config) -> dict:
    """The fields that shape tensors (not max_decoder_steps / gate_threshold)."""
    d = dataclasses.asdict(config)
    d.pop("max_decoder_steps", None)
    d.pop("gate_threshold", None)
    return d


# ---------------------------------------------------------------------------------------------
# golden files


def test_tacotron2_train_py_layout(golden_dir, tacotron2):
    config, weights, info = tacotron2
    assert config.encoder_embedding_dim == 64 and config.attention_rnn_dim == 96
    assert config.max_decoder_steps == 48  # taken from the checkpoint's config, not a default
    assert list(weights) == list(tacotron2_shapes(config))
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in weights.values())
    assert info["config_from"] == "checkpoint config"
    assert "module." in info["layout"] and "train.py" in info["layout"]
    assert info["sha256"] == hashlib.sha256((golden_dir / "tacotron2_dle.pt").read_bytes()).hexdigest()
    assert info["ignored_keys"] == []


def test_tacotron2_legacy_bare_state_dict_equals_train_py(golden_dir, tacotron2):
    config, weights, info = load_tacotron2(golden_dir / "tacotron2_legacy.pt")
    assert info["layout"] == "bare state_dict" and info["config_from"] == "tensor shapes"
    # Inferred from the tensors alone, the dimensions equal the config stored beside them.
    assert _dimensions(config) == _dimensions(tacotron2[0])
    assert list(weights) == list(tacotron2[1])
    for key in weights:
        np.testing.assert_array_equal(weights[key], tacotron2[1][key], err_msg=key)


def test_waveglow_whole_module_pickle_equals_train_py(golden_dir, waveglow):
    config, weights, info = load_waveglow(golden_dir / "waveglow_pickled.pt")
    assert "whole-module pickle" in info["layout"] and "weight norm" in info["layout"]
    assert config == waveglow[0]  # inferred from shapes == stored config
    assert config == WaveGlowConfig(80, 8, 8, 4, 2, 2, 3, 32)
    assert list(weights) == list(waveglow[1]) == list(waveglow_shapes(config))
    for key in weights:
        np.testing.assert_array_equal(weights[key], waveglow[1][key], err_msg=key)


def test_weight_norm_is_folded_as_torch_computes_it(golden_dir, waveglow, torch):
    state = torch.load(golden_dir / "waveglow_dle.pt")["state_dict"]
    weights = waveglow[1]
    for key in ("WN.0.start", "WN.3.in_layers.1", "WN.7.cond_layers.0", "WN.5.res_skip_layers.1"):
        expected = torch._weight_norm(state[key + ".weight_v"], state[key + ".weight_g"], 0).numpy()
        np.testing.assert_allclose(weights[key + ".weight"], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(weights["WN.0.end.weight"], state["WN.0.end.weight"].numpy())


# ---------------------------------------------------------------------------------------------
# other layouts, written with torch from the golden weights


@pytest.fixture(scope="module")
def waveglow_state(golden_dir, torch):
    return torch.load(golden_dir / "waveglow_dle.pt")["state_dict"]


@pytest.fixture(scope="module")
def tacotron2_checkpoint(golden_dir, torch):
    return torch.load(golden_dir / "tacotron2_dle.pt")


def _save(torch, path, obj):
    torch.save(obj, path)
    return path


def test_waveglow_single_cond_layer_is_split_per_layer(torch, tmp_path, waveglow_state, waveglow):
    """NVIDIA/waveglow's WN: one cond_layer of 2*C*L outputs instead of L convs of 2*C."""
    state = OrderedDict()
    for key, value in waveglow_state.items():
        if ".cond_layers." in key:
            wn, rest = key.split(".cond_layers.")
            layer, param = rest.split(".", 1)
            if layer != "0":
                continue
            parts = [waveglow_state[f"{wn}.cond_layers.{i}.{param}"] for i in range(2)]
            state[f"{wn}.cond_layer.{param}"] = torch.cat(parts, dim=0)
        else:
            state[key] = value
    path = _save(torch, tmp_path / "glow_style.pt", {"model": state, "iteration": 1})
    config, weights, info = load_waveglow(path)
    assert "single cond_layer" in info["layout"]
    assert config == waveglow[0]
    for key in waveglow[1]:
        np.testing.assert_allclose(weights[key], waveglow[1][key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_waveglow_parametrized_weight_norm_is_folded(torch, tmp_path, waveglow_state, waveglow):
    """torch's newer weight norm names g and v parametrizations.weight.original0/1."""
    state = OrderedDict()
    for key, value in waveglow_state.items():
        for suffix, index in ((".weight_g", 0), (".weight_v", 1)):
            if key.endswith(suffix):
                key = key[: -len(suffix)] + f".parametrizations.weight.original{index}"
        state["module." + key] = value
    config, weights, _ = load_waveglow(_save(torch, tmp_path / "parametrized.pt", state))
    for key in waveglow[1]:
        np.testing.assert_allclose(weights[key], waveglow[1][key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_a_zero_channel_under_weight_norm_folds_to_zero(torch, tmp_path, waveglow_state, waveglow):
    """A channel whose v is all zeros (what an FP16 export of a switched-off channel holds) has no
    direction; torch's g v / ||v|| would make it NaN, the import makes it 0 and leaves the rest."""
    state = OrderedDict((k, v.clone()) for k, v in waveglow_state.items())
    state["WN.2.cond_layers.0.weight_v"][5] = 0.0
    _, weights, _ = load_waveglow(_save(torch, tmp_path / "dead_channel.pt", {"state_dict": state}))
    np.testing.assert_array_equal(weights["WN.2.cond_layers.0.weight"][5], 0.0)
    np.testing.assert_allclose(weights["WN.2.cond_layers.0.weight"][6], waveglow[1]["WN.2.cond_layers.0.weight"][6],
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_name(torch, tmp_path, tacotron2_checkpoint, bad):
    state = OrderedDict((k, v.clone()) for k, v in tacotron2_checkpoint["state_dict"].items())
    state["module.decoder.attention_rnn.weight_hh"][3, 7] = bad
    path = _save(torch, tmp_path / "diverged.pt", {"state_dict": state})
    with pytest.raises(CheckpointError, match=r"diverged.pt.*decoder.attention_rnn.weight_hh.*NaN or infinite"):
        load_tacotron2(path)


def test_float16_checkpoint_is_widened(torch, tmp_path, tacotron2_checkpoint, tacotron2):
    half = {k: v.half() if v.is_floating_point() else v for k, v in tacotron2_checkpoint["state_dict"].items()}
    _, weights, _ = load_tacotron2(_save(torch, tmp_path / "half.pt", {"state_dict": half}))
    for key, value in weights.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, tacotron2[1][key].astype(np.float16).astype(np.float32))


def test_extra_keys_are_reported_not_imported(torch, tmp_path, tacotron2_checkpoint):
    state = dict(tacotron2_checkpoint["state_dict"], **{"module.speaker_embedding.weight": torch.ones(4, 64)})
    _, weights, info = load_tacotron2(_save(torch, tmp_path / "extra.pt", {"state_dict": state}))
    assert info["ignored_keys"] == ["speaker_embedding.weight"]
    assert "speaker_embedding.weight" not in weights


# ---------------------------------------------------------------------------------------------
# wrong files


def test_wrong_model_kind_is_named(golden_dir):
    with pytest.raises(CheckpointLayoutError, match="'tacotron2_dle.pt' is a Tacotron2 checkpoint, not WaveGlow"):
        load_waveglow(golden_dir / "tacotron2_dle.pt")
    with pytest.raises(CheckpointLayoutError, match="'waveglow_pickled.pt' is a WaveGlow checkpoint, not Tacotron2"):
        load_tacotron2(golden_dir / "waveglow_pickled.pt")


def test_missing_key_is_named(torch, tmp_path, tacotron2_checkpoint):
    state = dict(tacotron2_checkpoint["state_dict"])
    del state["module.decoder.gate_layer.linear_layer.bias"]
    path = _save(torch, tmp_path / "missing.pt", dict(tacotron2_checkpoint, state_dict=state))
    with pytest.raises(CheckpointLayoutError, match="'missing.pt': the weight decoder.gate_layer.linear_layer.bias is missing"):
        load_tacotron2(path)


def test_missing_key_needed_for_inference_is_named(torch, tmp_path, waveglow_state):
    state = {k: v for k, v in waveglow_state.items() if not k.startswith("WN.0.start")}
    with pytest.raises(CheckpointLayoutError, match="'nostart.pt' lacks the weight WN.0.start.weight"):
        load_waveglow(_save(torch, tmp_path / "nostart.pt", state))


def test_wrong_shape_is_named(torch, tmp_path, tacotron2_checkpoint):
    state = dict(tacotron2_checkpoint["state_dict"])
    state["module.postnet.convolutions.2.0.conv.weight"] = torch.zeros(64, 64, 3)
    path = _save(torch, tmp_path / "shape.pt", dict(tacotron2_checkpoint, state_dict=state))
    with pytest.raises(CheckpointLayoutError,
                       match=r"postnet.convolutions.2.0.conv.weight has shape \(64, 64, 3\), expected \(64, 64, 5\)"):
        load_tacotron2(path)


def test_config_contradicting_the_weights_is_refused(torch, tmp_path, tacotron2_checkpoint):
    path = _save(torch, tmp_path / "config.pt",
                 dict(tacotron2_checkpoint, config=dict(tacotron2_checkpoint["config"], attention_dim=48)))
    with pytest.raises(CheckpointLayoutError, match="query_layer.linear_layer.weight has shape"):
        load_tacotron2(path)


def test_config_layer_counts_are_checked_before_use(torch, tmp_path, golden_dir, waveglow_state):
    config = torch.load(golden_dir / "waveglow_dle.pt")["config"]
    path = _save(torch, tmp_path / "flows.pt", {"config": dict(config, n_flows=10**9), "state_dict": waveglow_state})
    with pytest.raises(CheckpointLayoutError, match="config says n_flows = 1000000000 but it holds weights for 8"):
        load_waveglow(path)


def test_integer_weights_are_refused(torch, tmp_path, tacotron2_checkpoint):
    state = dict(tacotron2_checkpoint["state_dict"])
    state["module.embedding.weight"] = torch.zeros(148, 64, dtype=torch.int32)
    with pytest.raises(CheckpointLayoutError, match="embedding.weight is int32"):
        load_tacotron2(_save(torch, tmp_path / "ints.pt", {"state_dict": state}))


def test_checkpoint_without_a_model_is_refused(torch, tmp_path):
    path = _save(torch, tmp_path / "empty.pt", {"epoch": 3, "optimizer": {}})
    with pytest.raises(CheckpointLayoutError, match="neither a state_dict nor a model.*epoch, optimizer"):
        load_tacotron2(path)


def test_layout_errors_are_checkpoint_errors():
    assert issubclass(CheckpointLayoutError, CheckpointError)


# ---------------------------------------------------------------------------------------------
# voice folders


@pytest.fixture(scope="module")
def voice_config(tacotron2, waveglow):
    return VoiceConfig(name="Test voice", tacotron2=tacotron2[0], waveglow=waveglow[0], symbols=SYMBOLS,
                       provenance={"note": "test"})


def test_import_voice_round_trip(golden_dir, tmp_path, tacotron2, waveglow):
    calls = []
    out = import_voice(golden_dir / "tacotron2_legacy.pt", golden_dir / "waveglow_pickled.pt", tmp_path / "lj",
                       name="LJ small", progress=lambda f, m: calls.append((f, m)))
    assert out == tmp_path / "lj"
    assert sorted(p.name for p in out.iterdir()) == ["tacotron2.safetensors", "voice.json", "waveglow.safetensors"]
    assert [f for f, _ in calls] == sorted(f for f, _ in calls) and calls[-1][0] == 1.0
    config, tac, wg = load_voice(out)
    assert config.name == "LJ small" and config.symbols == SYMBOLS
    assert _dimensions(config.tacotron2) == _dimensions(tacotron2[0]) and config.waveglow == waveglow[0]
    for key in tac:
        np.testing.assert_array_equal(tac[key], tacotron2[1][key])
    for key in wg:
        np.testing.assert_array_equal(wg[key], waveglow[1][key])
    source = config.provenance["waveglow"]
    assert source["file"] == "waveglow_pickled.pt" and "whole-module pickle" in source["layout"]
    assert source["sha256"] == hashlib.sha256((golden_dir / "waveglow_pickled.pt").read_bytes()).hexdigest()
    assert config.provenance["imported"].startswith("20")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_import_voice_refuses_swapped_files(golden_dir, tmp_path):
    with pytest.raises(CheckpointLayoutError, match="not Tacotron2"):
        import_voice(golden_dir / "waveglow_dle.pt", golden_dir / "tacotron2_dle.pt", tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_voice_round_trip_float16(tmp_path, voice_config, tacotron2, waveglow):
    path = save_voice(tmp_path / "half", voice_config, tacotron2[1], waveglow[1], dtype=np.float16)
    config, tac, wg = load_voice(path)
    assert config == voice_config
    assert all(v.dtype == np.float32 for v in (*tac.values(), *wg.values()))
    key = "decoder.attention_rnn.weight_ih"
    np.testing.assert_array_equal(tac[key], tacotron2[1][key].astype(np.float16).astype(np.float32))
    sizes = sum((path / n).stat().st_size for n in ("voice.json", "tacotron2.safetensors", "waveglow.safetensors"))
    assert voice_size_bytes(path) == sizes
    full = save_voice(tmp_path / "full", voice_config, tacotron2[1], waveglow[1])
    assert voice_size_bytes(full) > 1.9 * voice_size_bytes(path) - 20000


def test_saved_voice_is_readable_as_a_plain_copy_would_be(tmp_path, voice_config, tacotron2, waveglow):
    old = os.umask(0o022)
    try:
        path = save_voice(tmp_path / "v", voice_config, tacotron2[1], waveglow[1], dtype=np.float16)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0o700
    assert {f.name: f.stat().st_mode & 0o777 for f in path.iterdir()} == {
        "voice.json": 0o644, "tacotron2.safetensors": 0o644, "waveglow.safetensors": 0o644}


def test_saving_replaces_a_voice_but_nothing_else(tmp_path, voice_config, tacotron2, waveglow):
    target = save_voice(tmp_path / "v", voice_config, tacotron2[1], waveglow[1])
    renamed = dataclasses.replace(voice_config, name="Renamed")
    save_voice(target, renamed, tacotron2[1], waveglow[1])
    assert load_voice(target)[0].name == "Renamed"
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    with pytest.raises(VoiceError, match="refusing to overwrite"):
        save_voice(precious, voice_config, tacotron2[1], waveglow[1])
    assert (precious / "thesis.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "v"]


class _FailsOnSecondRead(dict):
    """A weights dict whose given entry raises the second time it is read: after the shapes were
    checked, in the middle of writing the files."""

    def __init__(self, weights, bad_key):
        super().__init__(weights)
        self.bad_key, self.reads = bad_key, 0

    def __getitem__(self, key):
        if key == self.bad_key:
            self.reads += 1
            if self.reads > 1:
                raise RuntimeError("disk on fire")
        return super().__getitem__(key)


def test_interrupted_write_leaves_nothing(tmp_path, voice_config, tacotron2, waveglow):
    bad = _FailsOnSecondRead(waveglow[1], "convinv.7.conv.weight")
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_voice(tmp_path / "new", voice_config, tacotron2[1], bad)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_voice(tmp_path, voice_config, tacotron2, waveglow, monkeypatch):
    target = save_voice(tmp_path / "v", voice_config, tacotron2[1], waveglow[1])
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []
    real_save_file = voice_files.save_file

    def interrupted_on_second_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while waveglow.safetensors is written
        return real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(voice_files, "save_file", interrupted_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        save_voice(target, dataclasses.replace(voice_config, name="New"), tacotron2[1], waveglow[1])
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_saving_refuses_weights_that_do_not_match(tmp_path, voice_config, tacotron2, waveglow):
    wrong = dict(tacotron2[1], **{"embedding.weight": np.zeros((100, 64), np.float32)})
    with pytest.raises(VoiceError, match=r"embedding.weight has shape \(100, 64\), expected \(148, 64\)"):
        save_voice(tmp_path / "v", voice_config, wrong, waveglow[1])
    assert not (tmp_path / "v").exists()


@pytest.fixture
def saved_voice(tmp_path, voice_config, tacotron2, waveglow):
    return save_voice(tmp_path / "voice", voice_config, tacotron2[1], waveglow[1])


def test_load_voice_errors(tmp_path, saved_voice):
    with pytest.raises(VoiceError, match="does not exist"):
        load_voice(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(VoiceError, match="voice.json is missing"):
        load_voice(tmp_path / "plain")

    (saved_voice / "waveglow.safetensors").write_bytes((saved_voice / "waveglow.safetensors").read_bytes()[:5000])
    with pytest.raises(VoiceError, match="waveglow.safetensors' is corrupt"):
        load_voice(saved_voice)
    (saved_voice / "waveglow.safetensors").unlink()
    with pytest.raises(VoiceError, match="incomplete: waveglow.safetensors is missing"):
        load_voice(saved_voice)


def test_load_voice_checks_voice_json(saved_voice):
    meta = saved_voice / "voice.json"
    data = json.loads(meta.read_text())

    data["tacotron2"]["prenet_dim"] = 48
    meta.write_text(json.dumps(data))
    with pytest.raises(VoiceError, match="does not match voice.json: the weight decoder.prenet"):
        load_voice(saved_voice)

    meta.write_text(json.dumps(dict(data, format_version=99)))
    with pytest.raises(VoiceError, match="format 99"):
        load_voice(saved_voice)

    meta.write_text("{ not json")
    with pytest.raises(VoiceError, match="voice.json' is unreadable"):
        load_voice(saved_voice)


def test_shape_tables_match_nvidia_state_dict_names(tacotron2_checkpoint, waveglow_state):
    """The tables list exactly NVIDIA's keys (less num_batches_tracked, weight norm folded)."""
    nvidia = {k[len("module."):] for k in tacotron2_checkpoint["state_dict"] if "num_batches_tracked" not in k}
    assert set(tacotron2_shapes(Tacotron2Config(**_dimensions_of(tacotron2_checkpoint["config"])))) == nvidia
    folded = {k.replace("weight_g", "weight") for k in waveglow_state if not k.endswith("weight_v")}
    assert set(waveglow_shapes(WaveGlowConfig(80, 8, 8, 4, 2, 2, 3, 32))) == folded


def _dimensions_of(config: dict) -> dict:
    known = {f.name for f in dataclasses.fields(Tacotron2Config)}
    return {k: v for k, v in config.items() if k in known}
