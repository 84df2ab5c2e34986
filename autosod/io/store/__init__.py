"""The Parquet mask store: parts, commit log, reader, schema (see `mask_store.MaskStore`)."""
