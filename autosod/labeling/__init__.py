"""The labelling job: config (no torch), the single-process labeller, Ray Data stages, the job.

Import the modules themselves; this package imports nothing, so that `autosod.labeling.config`
loads without torch or Ray.
"""
