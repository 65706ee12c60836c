"""Drawing detections on an image (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from featherface_deploy.file_writing import atomic_write_bytes
from featherface_deploy.postprocess.detections import Detections

LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
BOX_COLOUR = (0, 255, 0)


def draw_detections(image_bgr: np.ndarray, faces: Detections) -> Image.Image:
    """Returns an RGB Pillow image with boxes, scores and the five landmarks drawn."""
    canvas = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(max(canvas.size) / 400))
    for box, score, points in zip(faces.boxes, faces.scores, faces.landmarks):
        draw.rectangle([float(v) for v in box], outline=BOX_COLOUR, width=line)
        draw.text((float(box[0]), max(0.0, float(box[1]) - 12)), f"{score:.2f}", fill=BOX_COLOUR)
        for (x, y), colour in zip(points, LANDMARK_COLOURS):
            draw.ellipse([x - line - 1, y - line - 1, x + line + 1, y + line + 1], fill=colour)
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: Image.Image, path: str | Path) -> None:
    """Saves a PNG atomically."""
    atomic_write_bytes(path, png_bytes(image))
