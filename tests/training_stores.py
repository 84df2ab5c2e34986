"""Small mask stores made by the labelling code on real images, for the training tests.

`label_folder` runs the labelling job's stages in this process (decode -> POTNet -> writer), the
way `test_labeling_stages` does, so that a store costs seconds instead of a Ray job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from autosod.io.manifest import image_id_for
from autosod.io.store.mask_store import MaskStore
from autosod.labeling.actor import LabelStage
from autosod.labeling.config import LabelerConfig
from autosod.labeling.stages import decode_batch, encode_batch, write_batch

__all__ = ["LABEL_SIZE", "copy_benchmark", "label_folder"]

LABEL_SIZE = 96  # labelling input; enough for pseudo-masks a tiny training run can learn from


def copy_benchmark(source: Path, out: Path, count: int) -> list[Path]:
    """The first `count` images of a benchmark folder and their masks, copied to `out`."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    images = sorted((source / "images").iterdir())[:count]
    copied = []
    for image in images:
        copied.append(Path(shutil.copy(image, out / "images" / image.name)))
        mask = next((source / "masks").glob(f"{image.stem}.*"))
        shutil.copy(mask, out / "masks" / mask.name)
    return copied


def label_folder(images: list[Path], store: Path) -> MaskStore:
    """Label `images` into a new store at `store` with the labelling stages."""
    uris = [str(p) for p in images]
    batch = {"image_id": np.array([image_id_for(u) for u in uris], dtype=object),
             "uri": np.array(uris, dtype=object), "shard": np.zeros(len(uris), np.int64)}
    decoded = decode_batch(batch, input_size=LABEL_SIZE, max_pixels=10**8, storage_options=None)
    labeler = LabelerConfig(input_size=LABEL_SIZE, device="cpu")
    out = encode_batch(LabelStage(labeler, "test-config")(decoded),
                       threshold=labeler.potnet.mask_threshold)
    opened = MaskStore.open(str(store), config={"test": "training"})
    write_batch(out, store=opened)
    return opened
