"""lighttts-a10: a verified, reversible patch series that tunes LightTTS for A10-class GPUs."""

__version__ = "0.1.0"
