"""Training the AutoSOD network on pseudo-mask stores: config (no torch), augmentation (NumPy),
the torch training loop and checkpoints. Import the modules themselves; this file imports nothing.
"""
