"""Resizing decoded frames to MineCLIP's 160x256: FFmpeg's bicubic scaler, STEVE-1's bilinear resize,
or the Lanczos resize of konder/aimc's ``visual_embeds.pkl``.

``ffmpeg-bicubic``
    FFmpeg's swscale bicubic scaler (through PyAV), the resize goalcraft's decoders have always used.
``steve1-bilinear``
    What STEVE-1 does to every frame before MineCLIP (``process_frame_mineclip`` in
    ``steve1/data/generation/gen_mixed_agents.py`` and ``steve1/data/utils/contractor.py``):
    ``cv2.resize(frame, (256, 160), interpolation=cv2.INTER_LINEAR)`` on the uint8 RGB frame straight
    from the environment (640x360), with no crop, colour conversion or filtering before it (the
    aspect ratio changes from 16:9 to 16:10), then channels first. :func:`resize_bilinear_cv2` is
    OpenCV's ``INTER_LINEAR`` for uint8 images re-done in numpy, bit-exact (so OpenCV need not be
    installed):

    * source coordinate of output column ``x``: ``f = float32((x + 0.5) * W / w - 0.5)``,
      ``s = floor(f)``, weight ``f - s`` (half-pixel centres); columns outside the image are clamped
      with weight 0 on the missing neighbour; rows take the same formula but only their source row
      indices are clamped (OpenCV keeps the row weights, both then fall on the edge row);
    * weights as 11-bit fixed point: ``round(2048 · (1 − f))``, ``round(2048 · f)`` (ties to even);
    * horizontal pass in integers: ``S = p0 · a0 + p1 · a1`` (scale 2048);
    * vertical pass as OpenCV's SIMD kernel computes it (``VResizeLinearVec_32s8u``):
      ``(((S0 >> 4) · b0 >> 16) + ((S1 >> 4) · b1 >> 16) + 2) >> 2``, saturated to 0..255.

    Checked against ``cv2.resize`` of opencv-python-headless 4.13.0.92 (tests/test_resize.py runs
    the comparison when cv2 is importable): identical bytes for down- and up-scaling and odd sizes.
    OpenCV's scalar fallback (``(S0 · b0 + S1 · b1 + 2^21) >> 22``) differs by 1 on some pixels; it
    only ever ran on row tails that are not a whole SIMD vector, and a 256-pixel RGB row (768
    values) always is one, so older OpenCV releases give the same bytes at STEVE-1's size.
``pil-lanczos``
    ``PIL.Image.resize((256, 160), Image.Resampling.LANCZOS)``: how konder/aimc's
    ``record_samples.py`` resizes the last 16 frames of a recorded sample before MineCLIP, i.e. the
    resize behind its ``visual_embeds.pkl`` (not STEVE-1's).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

__all__ = ["RESIZE_METHODS", "ResizeMethod", "resize_bilinear_cv2", "resize_frame"]

ResizeMethod = Literal["ffmpeg-bicubic", "steve1-bilinear", "pil-lanczos"]
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


def _weights(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first source index, second source index, fixed-point weight of each) per output position."""
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        edge = (s < 0) | (s >= src - 1)
        f[edge] = 0.0
        s = np.where(s < 0, 0, np.where(s >= src - 1, src - 1, s))
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def resize_bilinear_cv2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for a uint8 ``[H, W]``
    or ``[H, W, C]`` image, bit-exact (the module docstring has the arithmetic)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 [H, W] or [H, W, C] image, got {image.dtype} {image.shape}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"output size must be positive, got height={height} width={width}")
    if image.shape[:2] == (height, width):
        return image.copy()
    plain = image.ndim == 2
    src = image[:, :, None] if plain else image
    x0, x1, a0, a1 = _weights(src.shape[1], int(width), clamp_weights=True)
    y0, y1, b0, b1 = _weights(src.shape[0], int(height), clamp_weights=False)
    pixels = src.astype(np.int64)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]  # [H, width, C], scale 2048
    top = ((rows[y0] >> 4) * b0[:, None, None]) >> 16
    bottom = ((rows[y1] >> 4) * b1[:, None, None]) >> 16
    out = np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)
    return out[:, :, 0] if plain else out


def _ffmpeg_bicubic(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_ndarray()


def _pil_lanczos(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))


_RESIZERS = {"ffmpeg-bicubic": _ffmpeg_bicubic, "steve1-bilinear": resize_bilinear_cv2, "pil-lanczos": _pil_lanczos}


def resize_frame(rgb: np.ndarray, height: int, width: int, method: str = "ffmpeg-bicubic") -> np.ndarray:
    """A uint8 ``[H, W, 3]`` RGB frame at ``height x width`` with ``method`` (one of
    :data:`RESIZE_METHODS`); a frame already at that size is returned as it is."""
    if method not in _RESIZERS:
        raise ValueError(f"unknown resize {method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    if rgb.shape[:2] == (height, width):
        return rgb
    return _RESIZERS[method](rgb, int(height), int(width))
