"""torch models, no Ray: weight sources, timm backbones and CAM sources; the AutoSOD network.

Import the modules themselves (`autosod.models.backbones`, ...): this package imports nothing, so
that the torch-free `autosod.models.config` stays cheap to import.
"""
