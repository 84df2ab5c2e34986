"""autosod: distributed POTNet pseudo-labelling, training and evaluation for salient objects."""

__version__ = "0.1.0"
