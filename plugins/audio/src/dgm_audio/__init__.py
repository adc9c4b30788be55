"""dgm-audio: speech as a dgm modality (codec, representations, data, networks, metrics)."""

__version__ = "0.2.0"
