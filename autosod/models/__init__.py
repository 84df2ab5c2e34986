"""torch models, no Ray: weight sources, timm backbones and CAM sources (labelling), and the
AutoSOD saliency network with its building blocks and losses (training, prediction).

Import the modules themselves (`autosod.models.backbones`, `autosod.models.autosod_net`, ...):
this package imports nothing, so that the torch-free `autosod.models.config` stays cheap.
"""
