"""dgm-image: the image modality for dgm."""

__version__ = "0.2.0"
