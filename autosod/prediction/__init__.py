"""Prediction with a trained AutoSOD network into a mask store: config (no torch), the actor body
(torch), the Ray Data job (the labelling job's pipeline).

Import the modules themselves; this package imports nothing, so that `autosod.prediction.config`
loads without torch or Ray.
"""
