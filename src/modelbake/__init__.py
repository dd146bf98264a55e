"""modelbake: bake ML models into image layers of their own, so apps run offline."""

__version__ = "0.1.0"
