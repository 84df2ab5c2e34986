"""Torch models (no Ray): the AutoSOD saliency network, its building blocks and its losses.

Import the modules themselves (`autosod.models.autosod_net`, `autosod.models.losses`); this
package file imports nothing, so importing one room does not load the others.
"""
