"""A local web page for segmenting any image with any vocabulary (``make webui``).

The page logic lives here, in two layers:

* :class:`WebDemo`, plain Python: it loads CLIP once (and a method's vision foundation
  model once, when a method that reads one is first asked for), keeps one segmentor per
  vocabulary and detector, and turns an uploaded file and the page's settings into a
  :class:`PageResult` (overlay with legend, class shares, outliers drawn on the image,
  the label map as a PNG, optionally per-block CLS attention).  Bad input raises
  :class:`InputError` with a message for the page.  No Gradio needed: tests call it directly.
* :func:`build_app`, the Gradio page around it (Gradio is the optional ``webui`` extra).

``tools/webui.py`` is the command that starts it.
"""
from __future__ import annotations

import copy
import html
import logging
import math
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from . import clip
from .analysis import OutlierAnalysis, analyze_image
from .apis import (
    PRESETS,
    available_methods,
    init_segmentor,
    load_preset,
    method_sam,
    method_vfm,
    prepare_image,
    resolve_vocabulary,
)
from .datasets import ImageReadError, read_image
from .models import SFPSegmentor
from .registry import OUTLIER_DETECTORS
from .text import parse_class_names
from .utils import atomic_write_png
from .utils.cli import is_test_weights
from .vfm import load_sam, load_vfm
from .visualization import add_legend, draw_region_borders, make_palette, overlay

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGES = REPO / 'demo' / 'images'
# The random-weight test model; a page running it says so in a banner.
TINY_CHECKPOINT = REPO / 'tests' / 'fixtures' / 'tiny_clip_state_dict.pt'

SHORT_SIDE = 336          # the benchmarks' inference resolution (short side, px)
DISPLAY_SIDE = 1024       # longest side of the pictures shown in the page
MAX_PIXELS = 50_000_000   # larger uploads are refused before decoding
MAX_CLASSES = 256         # the label map is an 8-bit PNG
MAX_QUERIES = 1024        # class names and synonyms together: each is 80 prompts to encode
SEGMENTORS_KEPT = 8       # segmentors (vocabulary x detector) kept; they share CLIP's weights
# The outlier view materialises every block's attention (heads x N x N each): it looks at
# the whole resized image when it has at most this many patches, else at its centre.
ANALYSIS_MAX_PATCHES = 1024
REQUESTS_KEPT = 32        # label maps of the latest requests kept for download

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Input the page cannot process; the message is shown to the user as it is."""


def vocabulary_presets() -> List[str]:
    """Names of the vocabulary presets (the benchmarks' class lists)."""
    return list(PRESETS)


def available_detectors() -> List[str]:
    """Registered outlier detectors, the ``pm`` choices."""
    return sorted(OUTLIER_DETECTORS.module_dict)


def parse_vocabulary(text: str) -> List[List[str]]:
    """Synonym lists of the page's vocabulary box.

    A preset name; or one class per line with synonyms after commas (a class-name
    file's format); or one line of comma-separated classes with synonyms joined by
    '|' (``sky,person|people,dog``).  Files are never read from the page.
    """
    text = text.strip()
    if not text:
        raise InputError(f'enter a vocabulary: a preset ({", ".join(vocabulary_presets())}) '
                         f'or class names separated by commas')
    if text in vocabulary_presets():
        return resolve_vocabulary(text)
    lines = text.splitlines() if '\n' in text else text.split(',')
    try:
        classes = parse_class_names([line.replace('|', ',') for line in lines],
                                    source='the vocabulary')
    except ValueError as err:
        raise InputError(str(err)) from err
    queries = sum(len(names) for names in classes)
    if len(classes) > MAX_CLASSES or queries > MAX_QUERIES:
        raise InputError(f'the vocabulary has {len(classes)} classes and {queries} names; '
                         f'the page takes at most {MAX_CLASSES} classes and {MAX_QUERIES} names')
    return classes


def read_upload(path: Optional[str]) -> np.ndarray:
    """An uploaded file as (H, W, 3) uint8 BGR, or :class:`InputError` saying why not."""
    if not path:
        raise InputError('upload an image first (or pick a bundled one)')
    name = Path(path).name
    too_large = InputError(f'{name} has more than {MAX_PIXELS / 1e6:.0f} megapixels, the most '
                           f'the page takes')
    try:
        with Image.open(path) as header:  # reads the header only: refuse pixel bombs early
            pixels = header.size[0] * header.size[1]
    except Image.DecompressionBombError as err:  # Pillow's own, larger limit
        raise too_large from err
    except (UnidentifiedImageError, OSError, ValueError):
        pixels = 0  # not a format Pillow knows: read_image decides, or explains
    if pixels > MAX_PIXELS:
        raise too_large
    try:
        image = read_image(path)
    except ImageReadError as err:
        raise InputError(str(err).replace(str(path), name)) from err
    return image


def inference_size(image_bgr: np.ndarray, patch_size: int, short_side: int) -> Tuple[int, int]:
    """(height, width) of the image resized like the benchmarks; refuses images that
    would be thinner than one patch."""
    height, width = prepare_image(image_bgr, short_side).shape[1:]
    if min(height, width) < patch_size:
        raise InputError(
            f'the image is {image_bgr.shape[1]}x{image_bgr.shape[0]} pixels: resized to the '
            f'inference resolution (short side {short_side}, long side at most 2048) it is '
            f'{width}x{height}, thinner than one {patch_size}-pixel patch. Crop it to an '
            f'aspect ratio of at most {2048 // patch_size}:1.')
    return height, width


def analysis_crop(height: int, width: int, patch_size: int,
                  max_patches: int = ANALYSIS_MAX_PATCHES) -> Optional[int]:
    """Side of the central crop :func:`~sfp.analysis.analyze_image` should look at so
    that it covers at most ``max_patches`` patches (None: the whole image fits).

    The crop keeps the full short side while that fits, else it is a square.
    """
    rows, cols = height // patch_size, width // patch_size
    if rows * cols <= max_patches:
        return None
    return max(max_patches // min(rows, cols), math.isqrt(max_patches)) * patch_size


@dataclass
class ClassShare:
    """One row of the class table."""

    index: int
    name: str
    pixels: int
    percent: float


def class_shares(labels: np.ndarray, class_names: Sequence[str]) -> List[ClassShare]:
    """Classes present in a label map with their share of the pixels, largest first."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    present = np.flatnonzero(counts)
    order = sorted(present, key=lambda c: (-counts[c], c))
    return [ClassShare(int(c), class_names[c], int(counts[c]),
                       float(100 * counts[c] / labels.size))
            for c in order]


def display_size(height: int, width: int, max_side: int = DISPLAY_SIDE) -> Tuple[int, int]:
    """(height, width) scaled down so that the longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_for_display(image_rgb: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The image (area-averaged) and its labels (nearest) at display size."""
    height, width = display_size(*labels.shape)
    if (height, width) == labels.shape:
        return image_rgb, labels
    return (cv2.resize(image_rgb, (width, height), interpolation=cv2.INTER_AREA),
            cv2.resize(labels.astype(np.int32), (width, height),
                       interpolation=cv2.INTER_NEAREST))


def draw_outliers(image_rgb: np.ndarray, positions: Sequence[Tuple[int, int]],
                  patch_px: Tuple[float, float], origin: Tuple[float, float] = (0, 0),
                  colour=(255, 0, 0)) -> np.ndarray:
    """Outline each outlier patch (row, col) on an image; ``patch_px`` is one patch's
    (height, width) and ``origin`` the (y, x) of patch (0, 0), in the image's pixels."""
    canvas = Image.fromarray(image_rgb)
    draw = ImageDraw.Draw(canvas)
    ph, pw = patch_px
    y0, x0 = origin
    line = max(1, round(min(ph, pw) / 8))
    for row, col in positions:
        draw.rectangle([x0 + col * pw, y0 + row * ph, x0 + (col + 1) * pw - 1,
                        y0 + (row + 1) * ph - 1], outline=colour, width=line)
    return np.asarray(canvas)


def attention_panels(cls_attention: torch.Tensor, outliers: Sequence[Tuple[int, int]],
                     detect_block: int, tile_width: int = 200) -> np.ndarray:
    """(L, rows, cols) per-block CLS attention -> one RGB picture: a heat map per block
    (each scaled to its own range), the outliers outlined at the detection block."""
    blocks, rows, cols = cls_attention.shape
    tile_height = max(1, round(tile_width * rows / cols))
    font = ImageFont.load_default()
    per_row = 4
    caption = 16
    sheet = Image.new('RGB', (per_row * (tile_width + 4),
                              -(-blocks // per_row) * (tile_height + caption + 4)), 'white')
    for block in range(blocks):
        values = cls_attention[block].float().numpy()
        span = values.max() - values.min()
        scaled = ((values - values.min()) / span if span > 0 else np.zeros_like(values))
        heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
        tile = cv2.resize(heat[:, :, ::-1], (tile_width, tile_height),
                          interpolation=cv2.INTER_NEAREST)
        if block + 1 == detect_block:
            tile = draw_outliers(tile, outliers, (tile_height / rows, tile_width / cols))
        x = (block % per_row) * (tile_width + 4)
        y = (block // per_row) * (tile_height + caption + 4)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, y + caption))
        label = f'block {block + 1}' + (' (detection)' if block + 1 == detect_block else '')
        ImageDraw.Draw(sheet).text((x + 2, y + 2), label, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


@dataclass
class Settings:
    """What the page asks for, besides the image."""

    vocabulary: str = 'voc21'
    method: str = 'sfp'
    pm: str = 'SOM'
    purify: bool = True
    logit_scale: float = 40.0
    prob_thd: float = 0.0
    area_thd: float = 0.0       # 0: keep every class however small
    short_side: int = SHORT_SIDE
    attention: bool = False     # also render per-block CLS attention


@dataclass
class PageResult:
    """Everything the page shows for one image."""

    overlay: np.ndarray              # (h, w + legend, 3) RGB at display size
    shares: List[ClassShare]
    outliers: np.ndarray             # (h, w, 3) RGB at display size, outliers outlined
    labels_png: Path                 # label map at the image's own size
    summary: str                     # one line of Markdown
    attention: Optional[np.ndarray]  # per-block CLS attention panels, when asked


class WebDemo:
    """Loads CLIP once and serves segmentation requests, one at a time.

    Args:
        clip_path: CLIP model name or checkpoint file.  When it cannot be had (offline,
            no file), the demo still starts: :attr:`error` says which file to place where,
            and every request answers with it.
        device, precision: as for :class:`~sfp.models.SFPSegmentor`.
        output_dir: where label maps are written for download (default: a new
            temporary folder).
        vfm_path: the vision foundation model of the methods that read one (name or
            file; default: each method's config's, e.g. 'dino_vitb8').  It is loaded when
            such a method is first asked for, once, and shared by its segmentors; when it
            cannot be had, those requests answer which file to place where.
        sam_path: SAM, for the methods that read it (Trident), likewise (default: each
            method's config's, 'sam_vit_b').
        masks: class-agnostic regions for every method (a folder of mask files or a
            generator name, see :mod:`sfp.masks`); None: each method's own (LaVG's
            panoptic cut).  The overlay shows their borders.
    """

    def __init__(self, clip_path: str = 'ViT-B/16', device: Optional[str] = None,
                 precision: Optional[str] = None, output_dir: Optional[Path] = None,
                 vfm_path: Optional[str] = None, sam_path: Optional[str] = None,
                 masks: Optional[str] = None):
        self.device = device
        self.masks = masks
        self.precision = precision
        self.vfm_path = vfm_path
        self.sam_path = sam_path
        self._vfms: Dict[str, torch.nn.Module] = {}  # name or file -> loaded tower
        if output_dir is None:  # a folder of our own, removed with the demo
            output_dir = tempfile.mkdtemp(prefix='sfp-webui-')
            weakref.finalize(self, shutil.rmtree, output_dir, True)
        self.output_dir = Path(output_dir)
        self.error: Optional[str] = None
        self.checkpoint: Optional[Path] = None
        self.clip: Optional[clip.CLIP] = None
        try:
            self.checkpoint = clip.resolve_checkpoint(clip_path)
            # Loaded once, in float32. Its text tower encodes each new vocabulary; its image
            # tower is shared by every segmentor built from it (a build moves it to the
            # segmentor's device and precision in place, under the request lock).
            self.clip = clip.load(self.checkpoint)
        except clip.CheckpointError as err:
            self.error = str(err)
        self.random_weights = is_test_weights(self.checkpoint)
        self._segmentors: OrderedDict = OrderedDict()
        self._outputs: deque = deque()  # output folders of the latest requests, oldest first
        self._lock = threading.Lock()  # one model call at a time, whoever calls

    def banner(self) -> Tuple[str, str]:
        """(kind, message) for the top of the page: 'error', 'warning' or 'info'."""
        if self.error:
            return 'error', f'The CLIP model could not be loaded. {self.error}'
        if self.random_weights:
            return 'warning', (
                'WARNING: random weights. This page runs the tiny random test model '
                f'({TINY_CHECKPOINT.name}): the results show the mechanics, not CLIP\'s '
                f'behaviour. Place ViT-B-16.pt in {clip.cache_dir()} (or set $SFP_CACHE) and '
                f'start with --clip-path ViT-B/16.')
        return 'info', f'Model: {self.checkpoint}'

    def segmentor(self, classes: List[List[str]], settings: Settings) -> SFPSegmentor:
        """The segmentor for a vocabulary and detector, with the request's thresholds.

        Segmentors are built from the loaded CLIP (its text tower encodes the new
        vocabulary; the image tower is shared, not copied) and kept, most recent last.
        The thresholds are set on a shallow copy, so a kept segmentor never changes.
        """
        detector = settings.pm if settings.purify else None  # without purify pm is unused
        key = (settings.method, tuple(map(tuple, classes)), detector)
        if key in self._segmentors:
            self._segmentors.move_to_end(key)
        else:
            towers = {k: v for k, v in (('vfm_path', self.vfm(settings.method)),
                                        ('sam_path', self.sam(settings.method)))
                      if v is not None}
            preset = settings.vocabulary.strip()
            preset = load_preset(preset) if preset in vocabulary_presets() else None
            names = (dict(class_names=preset.display_names)  # VOC's "background", not "sky"
                     if preset is not None and preset.classes == classes else {})
            self._segmentors[key] = init_segmentor(
                self.clip, classes, device=self.device, precision=self.precision,
                method=settings.method, pm=settings.pm, purify=settings.purify,
                return_probs=False, **towers, **names,
                **({} if self.masks is None else dict(masks=self.masks)),
                text_cache=self.checkpoint)  # the disk cache of the file CLIP came from
            while len(self._segmentors) > SEGMENTORS_KEPT:
                self._segmentors.popitem(last=False)
        configured = copy.copy(self._segmentors[key])
        configured.logit_scale = settings.logit_scale
        configured.prob_thd = settings.prob_thd
        configured.area_thd = settings.area_thd or None
        return configured

    def vfm(self, method: str) -> Optional[torch.nn.Module]:
        """The loaded vision foundation model a method reads (None for methods that read
        none), loaded on first use and kept: segmentors built from it share its weights,
        as they share CLIP's.  :class:`InputError` when it cannot be had."""
        return self._tower(method_vfm(method), self.vfm_path, load_vfm,
                           f'{method} reads a vision foundation model')

    def sam(self, method: str) -> Optional[torch.nn.Module]:
        """The loaded SAM a method reads (None for methods that read none), as :meth:`vfm`."""
        return self._tower(method_sam(method), self.sam_path, load_sam, f'{method} reads SAM')

    def _tower(self, default: Optional[str], chosen: Optional[str], load,
               what: str) -> Optional[torch.nn.Module]:
        if default is None:
            return None
        name = str(chosen or default)
        if name not in self._vfms:
            try:
                self._vfms[name] = load(name)
            except clip.CheckpointError as err:
                raise InputError(f'{what}, which could not be loaded: {err}') from None
        return self._vfms[name]

    def check(self, settings: Settings) -> None:
        """Clear errors for settings the page's widgets should not let through."""
        problems = []
        if settings.method not in available_methods():
            problems.append(f'method {settings.method!r} is not available; choose from '
                            f'{", ".join(available_methods())}')
        if settings.pm not in available_detectors():
            problems.append(f'detector {settings.pm!r} is unknown; choose from '
                            f'{", ".join(available_detectors())}')
        if not settings.logit_scale > 0:
            problems.append(f'logit scale must be positive, got {settings.logit_scale}')
        for name in ('prob_thd', 'area_thd'):
            if not 0 <= getattr(settings, name) <= 1:
                problems.append(f'{name} must be in [0, 1], got {getattr(settings, name)}')
        if not 64 <= settings.short_side <= 2048:
            problems.append(f'short side must be in [64, 2048], got {settings.short_side}')
        if problems:
            raise InputError('; '.join(problems))

    def run(self, image_path: Optional[str], settings: Settings) -> PageResult:
        """Segment one uploaded image (see :class:`PageResult`); :class:`InputError`
        for anything the user can fix."""
        if self.error:
            raise InputError(self.error)
        self.check(settings)
        classes = parse_vocabulary(settings.vocabulary)
        image = read_upload(image_path)
        with self._lock:
            segmentor = self.segmentor(classes, settings)
            patch_size = segmentor.encoder.visual.patch_size
            resized = inference_size(image, patch_size, settings.short_side)
            analysis = analyze_image(segmentor, image, detectors=[settings.pm],
                                     crop=analysis_crop(*resized, patch_size),
                                     short_side=settings.short_side, image_path=image_path)
            return self.render(image, analysis, resized, patch_size, settings,
                               Path(image_path).stem)

    def render(self, image_bgr: np.ndarray, analysis: OutlierAnalysis,
               resized: Tuple[int, int], patch_size: int, settings: Settings,
               stem: str) -> PageResult:
        """The page's pictures, table and download for one analysed image; ``resized``
        is the (height, width) it was segmented at."""
        labels, names = analysis.labels, analysis.class_names
        labels_png = self.output_dir / uuid.uuid4().hex / f'{stem}_labels.png'
        atomic_write_png(labels_png, labels.astype(np.uint8))
        self._keep_latest(labels_png.parent)
        palette = make_palette(len(names))
        shares = class_shares(labels, names)
        shown, shown_labels = fit_for_display(image_bgr[:, :, ::-1], labels)
        blended = overlay(shown, shown_labels, palette)
        if analysis.regions is not None:
            blended = draw_region_borders(blended, analysis.regions)
        figure = add_legend(blended, names, palette, [s.index for s in shares])
        positions = analysis.outliers[settings.pm]
        # Outliers are patches of the analysed crop, centred in the resized image
        # (as sfp.analysis.center_crop cuts it).
        crop_h, crop_w = analysis.crop.shape[:2]
        scale_y, scale_x = shown.shape[0] / resized[0], shown.shape[1] / resized[1]
        origin = ((resized[0] - crop_h) // 2 * scale_y, (resized[1] - crop_w) // 2 * scale_x)
        marked = draw_outliers(np.ascontiguousarray(shown), positions,
                               (patch_size * scale_y, patch_size * scale_x), origin)
        attention = (attention_panels(analysis.cls_attention, positions, analysis.detect_block)
                     if settings.attention else None)
        height, width = labels.shape
        mitigated = 'mitigated' if settings.purify else 'not mitigated: purify is off'
        where = ''
        if (crop_h, crop_w) != resized:
            where = f' in the central {crop_w}x{crop_h} of the resized {resized[1]}x{resized[0]}'
        summary = (f'{width}x{height} image, segmented at short side {settings.short_side} '
                   f'with {settings.method} ({len(names)} classes); {len(positions)} outliers '
                   f'found by {settings.pm} at block {analysis.detect_block}{where} '
                   f'({mitigated}).')
        return PageResult(figure, shares, marked, labels_png, summary, attention)

    def _keep_latest(self, folder: Path) -> None:
        """Remember a request's output folder; remove those before the latest
        :data:`REQUESTS_KEPT` (Gradio has copied their files into its own cache by then)."""
        self._outputs.append(folder)
        while len(self._outputs) > REQUESTS_KEPT:
            shutil.rmtree(self._outputs.popleft(), ignore_errors=True)


# -- the Gradio page ---------------------------------------------------------------------
BANNER_STYLES = {
    'error': 'background:#fdd;border:2px solid #c00',
    'warning': 'background:#fdd;border:2px solid #c00',
    'info': 'background:#eef;border:1px solid #99c',
}
TABLE_HEADERS = ['class', 'share (%)', 'pixels']
# White rows above each picture: the page draws the picture's label and buttons over its
# top corners, where the legend and outliers would otherwise hide.
LABEL_ROOM = 40


def import_gradio() -> Any:
    """Gradio, offline and without telemetry; a clear error when it is not installed."""
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    try:
        import gradio
    except ImportError as err:
        raise ImportError('the web demo needs Gradio: pip install -e .[webui] (or make '
                          'webui, which installs it)') from err
    return gradio


def banner_html(kind: str, message: str) -> str:
    return (f'<div id="banner-{kind}" style="{BANNER_STYLES[kind]};padding:8px">'
            f'{html.escape(message)}</div>')


def build_app(demo: WebDemo, vocabulary: str = 'voc21', method: str = 'sfp') -> Any:
    """The Gradio page (a ``gradio.Blocks``) around a :class:`WebDemo`."""
    gr = import_gradio()
    presets = vocabulary_presets()
    with gr.Blocks(title='SFP: segment anything you can name', analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:  # uploads and outputs live an hour
        gr.Markdown('## SFP: open-vocabulary segmentation with a purified CLIP')
        gr.HTML(banner_html(*demo.banner()), elem_id='banner')
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label='Image (upload or drop)', type='filepath',
                                 elem_id='upload')
                bundled = sorted(DEMO_IMAGES.glob('*.jpg'))
                if bundled:
                    gr.Examples([[str(p)] for p in bundled], inputs=[upload],
                                label='or pick a bundled image')
                preset = gr.Dropdown(presets, value=None, label='Preset vocabulary',
                                     elem_id='preset')
                text = gr.Textbox(vocabulary, lines=3, elem_id='vocabulary',
                                  label='Vocabulary: a preset name, "sky,person|people,dog" '
                                        '(synonyms joined by |), or one class per line')
                preset.change(lambda name: name, preset, text, queue=False)
                with gr.Row():
                    method_box = gr.Dropdown(available_methods(), value=method, label='Method')
                    pm = gr.Dropdown(available_detectors(), value='SOM',
                                     label='Outlier detector (pm)')
                    purify = gr.Checkbox(True, label='purify (mitigate outliers)')
                logit_scale = gr.Slider(1, 200, 40, step=1, label='logit scale')
                prob_thd = gr.Slider(0, 1, 0, step=0.01,
                                     label='prob_thd (less confident pixels -> class 0)')
                area_thd = gr.Slider(0, 1, 0, step=0.01,
                                     label='area_thd (drop classes this small; 0 = off)')
                short_side = gr.Slider(112, 672, SHORT_SIDE, step=16,
                                       label='inference short side (benchmarks: 336)')
                attention = gr.Checkbox(False, label='show per-block CLS attention')
                run = gr.Button('Segment', variant='primary', elem_id='run')
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id='status')
                overlay_image = _picture(gr, 'Segmentation', 'overlay')
                table = gr.Dataframe(headers=TABLE_HEADERS, label='Share of the image',
                                     interactive=False, elem_id='shares')
                outliers = _picture(gr, 'Outliers found by the detector', 'outliers')
                download = gr.File(label='Label map (PNG, class index per pixel)',
                                   interactive=False, elem_id='labels')
                attention_image = _picture(gr, 'CLS attention per block', 'attention',
                                           visible=False)

        def respond(path, vocab, method_name, pm_name, purify_on, scale, prob, area, side,
                    show_attention):
            settings = Settings(vocab or '', method_name, pm_name, bool(purify_on),
                                float(scale), float(prob), float(area), int(side),
                                bool(show_attention))
            try:
                result = demo.run(path, settings)
            except InputError as err:
                return _failure(gr, f'**Error:** {err}')
            except Exception as err:  # keep serving; the log has the traceback
                log.exception('segmentation failed')
                return _failure(gr, f'**Internal error** ({type(err).__name__}: {err}); '
                                    f'the server log has the details.')
            rows = [[s.name, round(s.percent, 2), s.pixels] for s in result.shares]
            attention = result.attention is not None
            return (result.summary, with_label_room(result.overlay), rows,
                    with_label_room(result.outliers), str(result.labels_png),
                    gr.update(value=with_label_room(result.attention) if attention else None,
                              visible=attention))

        run.click(respond, [upload, text, method_box, pm, purify, logit_scale, prob_thd,
                            area_thd, short_side, attention],
                  [status, overlay_image, table, outliers, download, attention_image],
                  concurrency_limit=1)
    return app


def with_label_room(picture: np.ndarray) -> np.ndarray:
    """The picture under :data:`LABEL_ROOM` white rows."""
    return np.pad(picture, ((LABEL_ROOM, 0), (0, 0), (0, 0)), constant_values=255)


def _picture(gr: Any, label: str, elem_id: str, visible: bool = True) -> Any:
    """An output picture, sent losslessly; no 'share' button (it posts to Hugging Face)."""
    return gr.Image(label=label, format='png', type='numpy', interactive=False,
                    buttons=['download', 'fullscreen'], visible=visible, elem_id=elem_id)


def _failure(gr: Any, message: str) -> tuple:
    return message, None, [], None, None, gr.update(value=None, visible=False)


def launch(app: Any, host: str = '127.0.0.1', port: int = 7860, block: bool = True) -> Any:
    """Serve the page: requests queued (the model runs one at a time), nothing fetched
    from the internet, files served only from the bundled images and Gradio's cache."""
    gr = import_gradio()
    app.queue(default_concurrency_limit=1, max_size=32)
    system_fonts = ['ui-sans-serif', 'system-ui', 'sans-serif']
    theme = gr.themes.Default(font=system_fonts, font_mono=['ui-monospace', 'monospace'])
    return app.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                      ssr_mode=False, share=False, theme=theme, quiet=True,
                      allowed_paths=[str(DEMO_IMAGES)], max_file_size='100mb',
                      mcp_server=False, run_history=False,
                      footer_links=['api', 'gradio', 'settings'])
