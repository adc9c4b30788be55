"""The points plugin for dgm."""
