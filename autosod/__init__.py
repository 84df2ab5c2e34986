"""autosod: distributed POTNet pseudo-labelling, training and evaluation for salient object detection."""

__version__ = "0.1.0"
