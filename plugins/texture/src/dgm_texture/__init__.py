"""dgm-texture: learn a texture from one exemplar photograph and generate new, seamless
texture of any size (entry point ``texture``)."""

__version__ = "0.2.0"
