"""NVIDIA's PyTorch implementation, run on our weights for `tts-desktop bench --compare-pytorch`.

Imports the model code from a DeepLearningExamples checkout the user points at (never shipped
with this project), builds NVIDIA's Tacotron2 / WaveGlow / Denoiser with the voice's config,
loads the very same weights, and times it the way NVIDIA's test_infer.py does: model.half() for
FP16, the decoder's early stop switched off when frames are forced, and a CUDA synchronize
around every timed region.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tts_desktop.bench import BenchResult
from tts_desktop.model.config import VoiceConfig


def _tacotron2_dir(path: Path) -> Path:
    for candidate in (path, path / "PyTorch" / "SpeechSynthesis" / "Tacotron2"):
        if (candidate / "tacotron2" / "model.py").is_file() and (candidate / "waveglow" / "model.py").is_file():
            return candidate
    raise FileNotFoundError(f"{path} is not a DeepLearningExamples checkout (no PyTorch/SpeechSynthesis/"
                            "Tacotron2/tacotron2/model.py under it)")


class PyTorchReference:
    def __init__(self, dle_path: Path, config: VoiceConfig, tacotron2_weights: dict, waveglow_weights: dict,
                 precision: str = "fp16", device: str = "cuda"):
        import torch

        root = _tacotron2_dir(dle_path)
        sys.path.insert(0, str(root))
        from tacotron2.model import Tacotron2
        from waveglow.denoiser import Denoiser
        from waveglow.model import WaveGlow

        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.precision = precision
        t = config.tacotron2
        self.tacotron2 = Tacotron2(
            mask_padding=False, n_mel_channels=t.n_mel_channels, n_symbols=t.n_symbols,
            symbols_embedding_dim=t.symbols_embedding_dim, encoder_kernel_size=t.encoder_kernel_size,
            encoder_n_convolutions=t.encoder_n_convolutions, encoder_embedding_dim=t.encoder_embedding_dim,
            attention_rnn_dim=t.attention_rnn_dim, attention_dim=t.attention_dim,
            attention_location_n_filters=t.attention_location_n_filters,
            attention_location_kernel_size=t.attention_location_kernel_size,
            n_frames_per_step=t.n_frames_per_step, decoder_rnn_dim=t.decoder_rnn_dim, prenet_dim=t.prenet_dim,
            max_decoder_steps=t.max_decoder_steps, gate_threshold=t.gate_threshold, p_attention_dropout=0.1,
            p_decoder_dropout=0.1, postnet_embedding_dim=t.postnet_embedding_dim,
            postnet_kernel_size=t.postnet_kernel_size, postnet_n_convolutions=t.postnet_n_convolutions,
            decoder_no_early_stopping=False)
        self.tacotron2.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                        for k, v in tacotron2_weights.items()})
        w = config.waveglow
        waveglow = WaveGlow(n_mel_channels=w.n_mel_channels, n_flows=w.n_flows, n_group=w.n_group,
                            n_early_every=w.n_early_every, n_early_size=w.n_early_size,
                            WN_config=dict(n_layers=w.wn_n_layers, kernel_size=w.wn_kernel_size,
                                           n_channels=w.wn_n_channels))
        # Our weights have weight norm folded in; remove NVIDIA's hooks first, as its inference does.
        waveglow = waveglow.remove_weightnorm(waveglow)
        waveglow.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in waveglow_weights.items()})
        self.waveglow = waveglow
        for m in (self.tacotron2, self.waveglow):
            m.to(self.device).eval()
            if precision == "fp16":
                m.half()
        self.denoiser = Denoiser(self.waveglow).to(self.device)
        self.audio = config.audio
        self.label = f"NVIDIA PyTorch {torch.__version__} {self.device.type} {precision}"

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def time(self, ids: list[int], batch: int, options, runs: int, warmup: int) -> BenchResult:
        torch = self.torch
        dec = self.tacotron2.decoder
        dec.max_decoder_steps = options.max_decoder_steps
        dec.early_stopping = options.early_stop
        result = BenchResult(label=self.label, latencies=[], mels=[], audio_seconds=[], batch=batch)
        seq = torch.tensor([ids] * batch, dtype=torch.long, device=self.device)
        lengths = torch.tensor([len(ids)] * batch, dtype=torch.int32, device=self.device)
        for i in range(warmup + runs):
            stages = {}
            with torch.no_grad():
                self._sync()
                t0 = time.perf_counter()
                mel, mel_lengths, _ = self.tacotron2.infer(seq, lengths)
                self._sync()
                t1 = time.perf_counter()
                audio = self.waveglow.infer(mel, sigma=options.sigma)
                self._sync()
                t2 = time.perf_counter()
                audio = self.denoiser(audio.float(), strength=options.denoise).squeeze(1)
                audio = audio.cpu().numpy()
                t3 = time.perf_counter()
            if i < warmup:
                continue
            stages = {"tacotron2": t1 - t0, "waveglow": t2 - t1, "denoiser": t3 - t2}
            result.latencies.append(t3 - t0)
            result.mels.append(int(mel.shape[2]))
            result.audio_seconds.append(int(mel_lengths[0]) * self.audio.hop_length / self.audio.sampling_rate)
            for k, v in stages.items():
                result.stages.setdefault(k, []).append(v)
        if self.device.type == "cuda":
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
        return result
