"""TTS Desktop: NVIDIA's Tacotron2 + WaveGlow, from a NumPy reference to a cuda-python engine."""

__version__ = "0.1.0"
