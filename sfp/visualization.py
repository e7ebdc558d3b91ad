"""Colour label maps, overlay them on images and draw a legend."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 RGB colours, pairwise distinct, none dark or grey.

    Farthest-point selection over the visible colours of a grid of the RGB cube (some
    channel >= 140, chroma = max - min channel >= 60): each colour is the candidate
    farthest from every colour before it, so colours are as far apart as the count allows,
    and the palette of n classes is the start of the palette of more.
    """
    levels = np.arange(0, 256, 15)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing='ij'), -1).reshape(-1, 3)
    visible = (grid.max(1) >= 140) & (grid.max(1) - grid.min(1) >= 60)
    candidates = grid[visible].astype(np.float64)
    if num_classes > len(candidates):
        raise ValueError(f'at most {len(candidates)} distinct colours, asked for {num_classes}')
    chosen = [int(np.argmax(candidates @ np.array([1.0, -1.0, -1.0])))]  # start at red
    distance = np.linalg.norm(candidates - candidates[chosen[0]], axis=1)
    for _ in range(1, num_classes):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(candidates - candidates[chosen[-1]],
                                                       axis=1))
    return candidates[chosen].astype(np.uint8).reshape(num_classes, 3)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) RGB; labels outside the palette are black."""
    safe = np.where((labels >= 0) & (labels < len(palette)), labels, 0)
    colours = palette[safe]
    colours[(labels < 0) | (labels >= len(palette))] = 0
    return colours


def overlay(image_rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            alpha: float = 0.55) -> np.ndarray:
    """Blend the coloured label map over an RGB image of the same size."""
    blended = (1 - alpha) * image_rgb.astype(np.float32) + alpha * colorize(labels, palette)
    return blended.round().clip(0, 255).astype(np.uint8)


def draw_region_borders(image_rgb: np.ndarray, regions: np.ndarray,
                        colour: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """The image with the borders between the regions of an (H, W) region map (class-
    agnostic masks, 0 = not segmented) drawn in ``colour``; the map is resized (nearest)
    to the image when their sizes differ."""
    if regions.shape != image_rgb.shape[:2]:
        rows = np.arange(image_rgb.shape[0]) * regions.shape[0] // image_rgb.shape[0]
        cols = np.arange(image_rgb.shape[1]) * regions.shape[1] // image_rgb.shape[1]
        regions = regions[rows][:, cols]
    border = np.zeros(regions.shape, dtype=bool)
    border[:-1] |= regions[:-1] != regions[1:]
    border[:, :-1] |= regions[:, :-1] != regions[:, 1:]
    drawn = image_rgb.copy()
    drawn[border] = colour
    return drawn


def add_legend(image_rgb: np.ndarray, class_names: Sequence[str], palette: np.ndarray,
               classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """Append a legend panel (colour swatch + name per class) to the right of the image."""
    classes = list(range(len(class_names))) if classes is None else list(classes)
    font = ImageFont.load_default()
    row = 18
    width = 28 + max((int(font.getlength(class_names[c])) for c in classes), default=0) + 12
    height = max(image_rgb.shape[0], row * len(classes) + 12)
    canvas = Image.new('RGB', (image_rgb.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(image_rgb), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = image_rgb.shape[1] + 8
    for i, c in enumerate(classes):
        y = 6 + i * row
        draw.rectangle([x, y, x + 14, y + 14], fill=tuple(int(v) for v in palette[c]),
                       outline=(0, 0, 0))
        draw.text((x + 20, y + 1), class_names[c], fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
