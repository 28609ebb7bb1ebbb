"""Videos in other FFmpeg containers, GIFs included, are found as ``videos/<id>.<ext>`` without a
``path`` field and decode through the decoder seam on both back ends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from goalcraft.data.decode import decord_available, get_decoder
from goalcraft.data.manifest import VIDEO_EXTENSIONS, read_manifest

FRAMES, WIDTH, HEIGHT = 20, 64, 48


def write_gif(path: Path) -> Path:
    """20 flat grey frames, frame i at level 10*i (exact in a GIF palette), 100 ms each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(np.full((HEIGHT, WIDTH, 3), 10 * i, np.uint8)) for i in range(FRAMES)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def test_common_ffmpeg_containers_are_tried_mp4_first():
    assert VIDEO_EXTENSIONS[0] == "mp4"
    assert {"gif", "mpg", "mpeg", "ts", "ogv", "wmv", "3gp"} <= set(VIDEO_EXTENSIONS)
    assert len(set(VIDEO_EXTENSIONS)) == len(VIDEO_EXTENSIONS)


@pytest.mark.parametrize("decoder", ["auto", "pyav", pytest.param("decord", marks=pytest.mark.skipif(
    not decord_available(), reason="decord is not installed here"))])
def test_a_gif_is_found_without_a_path_and_decodes(tmp_path, decoder):
    corpus = tmp_path / "corpus"
    write_gif(corpus / "videos" / "clip1.gif")
    manifest = corpus / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "clip1", "duration": 2.0, "fps": 10}) + "\n")

    (record,), quarantined = read_manifest(manifest, corpus)
    assert quarantined == [] and record.video_path == "videos/clip1.gif"

    with get_decoder(decoder).open(corpus / record.video_path, height=HEIGHT, width=WIDTH) as handle:
        info = handle.info
        decoded = handle.read([0, 5, 19])
    assert (info.num_frames, info.fps, info.width, info.height) == (FRAMES, 10.0, WIDTH, HEIGHT)
    assert decoded.frames.shape == (3, HEIGHT, WIDTH, 3)
    assert decoded.frames.reshape(3, -1).min(axis=1).tolist() == [0, 50, 190]
    assert decoded.frames.reshape(3, -1).max(axis=1).tolist() == [0, 50, 190]
    assert decoded.timestamps.tolist() == pytest.approx([0.0, 0.5, 1.9])
