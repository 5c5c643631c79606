"""Training the bundled demo voice: corpus (espeak-ng), PyTorch models, losses, trainer, evaluation.

Everything here needs PyTorch (the `train` extra) except `corpus` and the WER half of
`evaluate`. The models keep NVIDIA's DeepLearningExamples state-dict key names, so a checkpoint
written by `train` goes through `tts_desktop.model.importer` like an NGC one. docs/training.md
walks through the whole run.
"""
