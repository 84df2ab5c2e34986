"""CPU actors keep freed host memory for the next batch (`labeling.host_memory`), and the CPU
backbone runs in chunks of images without changing any result."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from host_memory_probe import page_faults

from autosod.io.decode import DEFAULT_MAX_PIXELS, read_image, resize_to_input
from autosod.labeling.config import LabelerConfig
from autosod.labeling.labeler import PseudoLabeler


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_cpu_label_stage_keeps_freed_memory_instead_of_faulting_it_in_again() -> None:
    default = page_faults("")
    kept = page_faults("from autosod.labeling.host_memory import keep_freed_memory\n"
                       "assert keep_freed_memory()")
    actor = page_faults("from autosod.labeling.actor import LabelStage\n"
                        "from autosod.labeling.config import LabelerConfig\n"
                        "LabelStage(LabelerConfig(device='cpu', input_size=64), 'h')")
    # 96 MiB freed and allocated again per round: thousands of pages faulted in each time
    assert default > 10 * 2_000, default
    assert kept < default / 20, (kept, default)
    assert actor < default / 20, (actor, default)


def test_the_cpu_backbone_in_chunks_gives_the_whole_batch_results(shared_data: Path) -> None:
    paths = sorted((shared_data / "weizmann-horse" / "images").glob("*.jpg"))[:5]
    config = LabelerConfig(device="cpu", input_size=128)
    images = np.stack([resize_to_input(read_image(str(p), max_pixels=DEFAULT_MAX_PIXELS).rgb,
                                       config.input_size) for p in paths])
    whole = PseudoLabeler(config, cpu_chunk=len(paths))
    chunked = PseudoLabeler(config, cpu_chunk=2)  # 2 + 2 + 1 images
    a, b = whole.features(images), chunked.features(images)
    assert a.grid == b.grid and a.feats.shape == b.feats.shape and a.cams.shape == b.cams.shape
    torch.testing.assert_close(b.feats, a.feats, rtol=0, atol=1e-5)
    torch.testing.assert_close(b.cams, a.cams, rtol=1e-5, atol=1e-5)
    soft_a, soft_b = whole.label_grid(images).soft, chunked.label_grid(images).soft
    torch.testing.assert_close(soft_b, soft_a, rtol=0, atol=1e-4)
