"""Commands on an existing mask store: status, export, preview (no torch, no Ray)."""
