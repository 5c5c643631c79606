from tts_desktop.audio.files import AudioFileError, read_audio, to_pcm_range, write_audio

__all__ = ["AudioFileError", "read_audio", "to_pcm_range", "write_audio"]
