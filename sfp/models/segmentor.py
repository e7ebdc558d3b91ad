"""The open-vocabulary segmentor: an mmseg segmentor around a method's image encoder
(SFP's by default, or any of :data:`sfp.registry.ENCODERS`)."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from .. import clip
from ..datasets import dataset_meta
from ..masks import ImageRegions, MaskSource, MaskSpec, build_mask_source
from ..methods import SFPEncoder
from ..registry import ENCODERS, build_from_registry, registered_type
from ..text import build_query_features, load_vocabulary
from ..vfm import load_sam, load_vfm
from .data_preprocessor import SFPDataPreProcessor, unit_rgb
from .detectors import build_detector
from .inference import SlidingWindowLayout, patch_logits
from .label_votes import LabelVotes
from .logit_map import LogitMap
from .map_correction import correct_map
from .pamr import PAMR
from .postprocess import postprocess_class_map, postprocess_logit_map, postprocess_logits
from .propagation import LabelPropagation, node_positions

ImageBatch = Union[torch.Tensor, Sequence[torch.Tensor]]


def default_device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


@dataclass
class ImageMaps:
    """What the crops of one image give, before the final resize.

    Attributes:
        logits: its query logits, factored (see :meth:`SFPSegmentor.coarse_logits`).
        votes: the label votes of its windows at its input size, for a method that
            decides labels itself (``MethodEncoder.decides_labels``), else None.
        refine: a method's refinement of the image's class probabilities and labels at
            the output size, ``(probs, labels) -> (probs, labels)`` (Trident's SAM
            prompts), applied after the thresholds; None: none.
        regions: its class-agnostic regions when the segmentor has a mask source (for
            image-level post-processing: ``regions.original`` is at ``ori_shape``), else
            None.
    """

    logits: LogitMap
    votes: Optional[LabelVotes] = None
    refine: Optional[Callable[[torch.Tensor, torch.Tensor],
                              Tuple[torch.Tensor, torch.Tensor]]] = None
    regions: Optional[ImageRegions] = None


@dataclass
class PatchNodes:
    """The nodes of an image's patch-level propagation: its windows' logit cells, window
    by window (row-major), each window's cells row-major.

    Attributes:
        scores: (N, Q) their logits.
        features: (N, C) their unit-norm VFM features.
        positions: (N, 2) their centres (y, x) in input pixels.
        blocks: each window's block of the logit canvas.
        grids: each window's (rows, cols) cells.
    """

    scores: torch.Tensor
    features: torch.Tensor
    positions: torch.Tensor
    blocks: List[Tuple[slice, slice]]
    grids: List[Tuple[int, int]]

    def canvas(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(N, Q) node values back into a canvas shaped like ``like`` (Q, R, C)."""
        canvas = torch.empty_like(like)
        first = 0
        for (rows, cols), block in zip(self.grids, self.blocks):
            canvas[(slice(None), *block)] = values[first:first + rows * cols].T.reshape(
                -1, rows, cols)
            first += rows * cols
        return canvas


def _check_device(device: Union[str, torch.device, None]) -> torch.device:
    device = default_device() if device is None else torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available here; "
                         f"use device='cpu' (or leave it unset to pick automatically)")
    return device


@MODELS.register_module(name=['SFPSegmentor', 'SFPForSegmentation',
                                'OpenVocabularySegmentor'])
class SFPSegmentor(BaseSegmentor):
    """Training-free open-vocabulary segmentation on a frozen CLIP ViT, with SFP or any
    method of :data:`sfp.registry.ENCODERS` (``encoder=dict(type=...)``).

    The segmentor holds what every method shares: the vocabulary and its text features,
    sliding windows or the whole image, factored logit maps, PAMR, thresholds and
    batched prediction.  A method is its image encoder.  The constructor takes the SFP
    release's arguments (its configs keep working under the release's name
    ``SFPForSegmentation``) and a few more; ``OpenVocabularySegmentor`` is a neutral
    alias for configs of other methods.

    Args:
        clip_path: CLIP model name ('ViT-B/16', ...), checkpoint path, or a loaded
            :class:`sfp.clip.CLIP` (used as it is; its weights become the segmentor's).
        name_path: class-name file (one class per line, synonyms separated by commas),
            or the synonym lists themselves.
        device: where the model runs (default: CUDA when available, else CPU).
        pamr_steps: PAMR iterations on the logits (0 = off, as in every released setting).
        pamr_stride: PAMR dilations.
        prob_thd: pixels whose top class probability is below it become class 0.
        logit_scale: temperature of the softmax over queries.
        slide_stride, slide_crop: sliding-window stride and crop; ``slide_crop=0`` (or
            None) encodes the whole image at once, and then ``slide_stride`` may be None.
        area_thd: classes covering at most this fraction of the non-0 pixels are dropped.
        purify: detect outliers on the detection block's output (``pm``) and mitigate
            them before the method's last block; works with every method.  None takes
            the method's default: True for SFP (False is its ablation), False for the
            baselines (as released).
        pm: outlier detector: a registered name ('SOM', 'L2', 'LOF', ...) or a config
            dict such as ``dict(type='LOF', n_neighbors=20)``.
        res_cls, cross_s, cross_e: SFP's own knobs, its release's arguments (kept so that
            ``SFPForSegmentation(clip_path, name_path, ..., res_cls=..., cross_s=...)``
            and its configs work).  Configs now give them to SFP's encoder,
            ``encoder=dict(type='SFPEncoder', res_cls=0.3, cross_s=3, cross_e=10)``; given
            here (not None) they override those.  ``res_cls`` also sets SOM's
            CLS-attention weight to ``5 * res_cls``, as the release ties them (for every
            method; default 0.3); ``cross_s`` / ``cross_e`` are SFP's only.
        precision: 'fp32', 'fp16', 'bf16' or 'fp64' (default: fp16 on GPU, fp32 on CPU).
        crop_batch_size: crops encoded per forward pass, across all images of a batch;
            None sizes batches to ``memory_budget_mb`` (see :meth:`crops_per_batch`).
        memory_budget_mb: working memory for one crop batch (default: half of the free
            GPU memory, or 2048 MiB on the CPU).
        templates: prompt template file or list (default: CLIP's 80 ImageNet templates).
        encoder: the method: a config dict ``dict(type=<name in ENCODERS>, ...)`` of its
            encoder's arguments (the image tower and, with ``purify``, the detector are
            filled in).  None builds SFP's encoder from the arguments above.
        encoder_cfg: further encoder arguments, merged over ``encoder`` (SFP: block
            choices, ``stream_mitigation_blocks`` ...; parts as modules or config dicts;
            ``enhancer=None`` or ``integrator=None`` drop step 6 or step 8: ablations).
        resize_via_input: in whole-image mode, resize the patch-grid logits to the input
            size and then to the original size (NACLIP's release) instead of straight
            to the original size.
        pad_crops: in sliding mode, zero-pad (in normalised space) a window whose side is
            not a multiple of the patch size to whole patches, upsample its logits to
            the padded size and cut the padding off (ClearCLIP's release); an int pads
            to a multiple of that many pixels instead (ProxyCLIP's 56); by default the
            patch convolution drops the remainder pixels.
        text_cache: cache the query features on disk (see
            :func:`sfp.text.build_query_features`), keyed by the checkpoint file; with a
            loaded ``clip_path``, the checkpoint file it was loaded from (else no cache).
        return_probs: store the class probabilities (``seg_logits``) in the predictions;
            False keeps only the label maps (less memory for very large images).
        allow_duplicate_names: accept a class file that gives one name to two classes
            (only to reproduce a release's file as it is; see
            :func:`sfp.text.parse_class_names`).
        pretrained, train_cfg, test_cfg: mmseg's ``init_model`` sets the first two to
            None; there is nothing else to give: the weights come from ``clip_path``,
            there is no training, and ``slide_crop`` / ``slide_stride`` are the window.
        class_names: the name of each class, for legends, tables and mmseg's
            ``dataset_meta`` (a preset gives its dataset's: VOC's class 0 is
            "background", however its queries read); default: each class's first synonym.
            A config's dataset that names each class names them instead (see
            :attr:`dataset_meta`).
        vfm_path: the vision foundation model of a method that reads one (ProxyCLIP,
            CASS; :attr:`~sfp.models.encoder.MethodEncoder.uses_vfm`): a name
            ('dino_vitb8', ...: downloaded once), a checkpoint file, or a loaded tower
            (used as it is, moved to the segmentor's device and precision: segmentors built
            from one tower share it).  The method's base config names its default; other
            methods take none, except to give it to a mask generator (``masks``) or to
            patch-level ``propagation``.
        sam_path: SAM, for a method that reads it (Trident;
            :attr:`~sfp.models.encoder.MethodEncoder.uses_sam`): a name ('sam_vit_b',
            'sam_vit_l', 'sam_vit_h': downloaded once), a checkpoint file with the released
            key names, or a loaded :class:`sfp.vfm.SAM` (shared as ``vfm_path``).
        masks: where each image's class-agnostic regions come from (:mod:`sfp.masks`): a
            folder of per-image files (LaVG's ``<name>.pth``, CorrCLIP's ``<stem>.npz``,
            found by the file name of the sample's ``img_path``), a generator's name or
            config dict (``dict(type='PanopticCut', imgsize=640, N=8)``: run on each image
            file; it reads ``vfm_path`` when it names no VFM of its own), or None.  A
            method that reads regions (``uses_masks``: LaVG, CorrCLIP) needs one; any
            other method gets them in :class:`ImageMaps` for post-processing.
        maskpred_root, instance_mask_path: the releases' names (LaVG's, CorrCLIP's) for a
            folder of mask files; given, it replaces ``masks``.
        map_correction: after the thresholds, every region of the image's region map (the
            mask source's, at the original size) but the smallest id takes the label most of
            its pixels have (CorrCLIP's post-process, :func:`~sfp.models.correct_map`; any
            method with a mask source).  The probabilities are left as they are.
        propagation: label propagation over patches and pixels on the method's logits
            (LPOSS; :class:`~sfp.models.propagation.LabelPropagation`'s arguments as a dict,
            e.g. ``dict(k=400, pixel_refine=True)``), or None (off).  Its patch level links
            the windows' logit cells by ``vfm_path``'s features; ``patch=False`` runs only
            the pixel level (LPOSS+'s), which needs no VFM.
        synonyms_at_input: take each class's max over its synonyms' logits at the input
            size, before the final resize (LPOSS's release), so that ``inference`` gives
            class logits and the softmax runs over classes; by default the max is over
            the query probabilities at the output size.
        clip_activation: the MLP activation of a CLIP checkpoint that cannot tell it (a
            bare state dict): 'quick_gelu' (OpenAI's, the default), 'gelu' (open_clip's
            LAION weights, which LPOSS uses) or 'gelu_tanh'.
    """

    def __init__(self,
                 clip_path: Union[str, Path, clip.CLIP],
                 name_path: Union[str, Path, Sequence[Sequence[str]]],
                 device: Union[str, torch.device, None] = None,
                 pamr_steps: int = 0,
                 pamr_stride: Sequence[int] = (8, 16),
                 prob_thd: float = 0.0,
                 logit_scale: float = 40,
                 slide_stride: Optional[int] = 112,
                 slide_crop: Optional[int] = 224,
                 area_thd: Optional[float] = None,
                 purify: Optional[bool] = None,
                 pm: Union[str, dict] = 'SOM',
                 res_cls: Optional[float] = None,
                 cross_s: Optional[int] = None,
                 cross_e: Optional[int] = None,
                 precision: Optional[str] = None,
                 crop_batch_size: Optional[int] = None,
                 memory_budget_mb: Optional[float] = None,
                 templates: Union[str, Path, Sequence[str], None] = None,
                 encoder: Optional[dict] = None,
                 encoder_cfg: Optional[dict] = None,
                 resize_via_input: bool = False,
                 pad_crops: Union[bool, int] = False,
                 text_cache: Union[bool, str, Path] = True,
                 return_probs: bool = True,
                 allow_duplicate_names: bool = False,
                 class_names: Optional[Sequence[str]] = None,
                 vfm_path: Union[str, Path, nn.Module, None] = None,
                 sam_path: Union[str, Path, nn.Module, None] = None,
                 masks: MaskSpec = None,
                 maskpred_root: Union[str, Path, None] = None,
                 instance_mask_path: Union[str, Path, None] = None,
                 map_correction: bool = False,
                 propagation: Optional[dict] = None,
                 synonyms_at_input: bool = False,
                 clip_activation: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None):
        _check_arguments(prob_thd=prob_thd, logit_scale=logit_scale, slide_crop=slide_crop,
                         slide_stride=slide_stride, area_thd=area_thd,
                         crop_batch_size=crop_batch_size, pamr_steps=pamr_steps,
                         memory_budget_mb=memory_budget_mb, pad_crops=pad_crops)
        _refuse_mmseg_arguments(pretrained=pretrained, train_cfg=train_cfg, test_cfg=test_cfg)
        # Built here, from mmseg's registry, so that it works outside mmseg's default scope.
        preprocessor_cfg = data_preprocessor or dict(type=SFPDataPreProcessor.__name__)
        super().__init__(data_preprocessor=MODELS.build(preprocessor_cfg), init_cfg=init_cfg)
        device = _check_device(device)
        if precision is None:
            precision = 'fp16' if device.type == 'cuda' else 'fp32'
        dtype = clip.precision_dtype(precision)
        encoder_type = _encoder_type(encoder)
        if purify is None:
            purify = encoder_type.purify_by_default
        method = dict(encoder or dict(type=SFPEncoder.__name__))
        method.update(encoder_cfg or {})  # e.g. integrator=None for an ablation
        method.update(_release_knobs(encoder_type, res_cls=res_cls, cross_s=cross_s,
                                     cross_e=cross_e))
        # SOM's CLS weight is tied to SFP's res_cls (to the argument's with other methods).
        tied = method.get('res_cls') if issubclass(encoder_type, SFPEncoder) else res_cls
        tied_weight = {} if tied is None else dict(res_cls=tied)
        parts = dict(detector=build_detector(pm, **tied_weight) if purify else None)
        parts.update(method)

        # Text features in at least float32, then keep only the image tower.
        text_dtype = torch.promote_types(dtype, torch.float32)
        # Fail on a bad class file before loading CLIP.
        classes = load_vocabulary(name_path, allow_duplicate_names)
        if class_names is not None and len(class_names) != len(classes):
            raise ValueError(f'class_names gives {len(class_names)} names for the '
                             f'{len(classes)} classes of name_path')
        masks = _mask_spec(masks, maskpred_root=maskpred_root,
                           instance_mask_path=instance_mask_path)
        if map_correction and masks is None:
            raise ValueError('map_correction votes inside each image\'s regions: set masks (a '
                             'folder of mask files or a generator), or instance_mask_path')
        if encoder_type.uses_masks and masks is None:
            raise ValueError(f'{encoder_type.__name__} reads class-agnostic regions: set masks '
                             f'(a folder of mask files or a generator such as '
                             f"'PanopticCut'), or maskpred_root / instance_mask_path")
        self.mask_source: Optional[MaskSource] = build_mask_source(
            masks, None if encoder_type.uses_vfm else vfm_path)
        if self.mask_source is not None:
            self.mask_source.to(device)
        propagation = dict(propagation) if propagation is not None else None
        vfm = None
        if encoder_type.uses_vfm or propagation is not None and propagation.get('patch', True):
            reader = (f'{encoder_type.__name__} reads' if encoder_type.uses_vfm
                      else 'patch-level propagation reads')
            vfm = _tower(vfm_path, load_vfm, f'{reader} a vision foundation model: set '
                         f"vfm_path (a name such as 'dino_vitb8', a checkpoint file or a loaded "
                         f'tower)', device, dtype)
        elif vfm_path is not None and masks is None:
            raise ValueError(f'vfm_path is set, but {encoder_type.__name__} reads no vision '
                             f'foundation model (methods that do: {", ".join(vfm_methods())}; '
                             f'or patch-level propagation)')
        if encoder_type.uses_vfm:
            parts.update(vfm=vfm)
        if encoder_type.uses_sam:
            parts.update(sam=_tower(
                sam_path, load_sam, f"{encoder_type.__name__} reads SAM: set sam_path (a name "
                f"such as 'sam_vit_b', a checkpoint file or a loaded SAM)", device, dtype))
        elif sam_path is not None:
            raise ValueError(f'sam_path is set, but {encoder_type.__name__} reads no SAM '
                             f'(methods that do: {", ".join(sam_methods())})')
        if encoder_type.encodes_whole_images:
            parts.update(slide_crop=slide_crop, slide_stride=slide_stride)
        if isinstance(clip_path, clip.CLIP):
            checkpoint, model = None, clip_path.to(device=device, dtype=text_dtype)
        else:
            checkpoint = clip.resolve_checkpoint(clip_path)
            model = clip.load(checkpoint, device=device, precision=text_dtype,
                              activation=clip_activation)
        self.clip_checkpoint = checkpoint  # the weights file, None for a loaded CLIP
        self._class_names = (list(class_names) if class_names is not None else
                             [names[0] for names in classes])
        self._dataset_meta: Optional[dict] = None  # see dataset_meta
        query_features, query_idx = build_query_features(
            model, classes, templates, checkpoint=_cache_key(text_cache, checkpoint))
        if encoder_type.uses_vocabulary:
            parts.update(query_features=query_features.to(dtype), query_idx=query_idx)
        self.encoder = build_from_registry(ENCODERS, dict(parts, visual=model.visual.to(dtype)),
                                           'encoder')
        del model
        self.register_buffer('query_features', query_features.to(dtype), persistent=False)
        self.register_buffer('query_idx', query_idx, persistent=False)
        self.num_queries = len(query_idx)
        self.num_classes = int(query_idx.max()) + 1
        self.logit_scale = logit_scale
        self.prob_thd = prob_thd
        self.area_thd = area_thd
        self.slide_stride = slide_stride
        self.slide_crop = slide_crop or 0
        self.crop_batch_size = crop_batch_size
        self.memory_budget_mb = memory_budget_mb
        self.return_probs = return_probs
        self.resize_via_input = resize_via_input
        self.pad_crops = pad_crops
        self.pamr = PAMR(pamr_steps, dilations=pamr_stride) if pamr_steps > 0 else None
        self.map_correction = map_correction
        if self.pamr is not None and self.encoder.decides_labels:
            raise ValueError(f'pamr_steps = {pamr_steps}: PAMR refines logits, but '
                             f'{type(self.encoder).__name__} decides the labels itself (its '
                             f'vote); set pamr_steps=0')
        self.propagation = None
        if propagation is not None:
            if self.encoder.decides_labels:
                raise ValueError(f'propagation refines logits, but {type(self.encoder).__name__}'
                                 f' decides the labels itself (its vote); set propagation=None')
            self.propagation = build_propagation(propagation, vfm)
        self.synonyms_at_input = synonyms_at_input
        self.data_preprocessor.to(device)

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's precision."""
        return self.query_features.dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        """Precision of logit accumulation and post-processing (at least float32)."""
        return torch.promote_types(self.dtype, torch.float32)

    # -- inference -------------------------------------------------------------------
    def _image_list(self, inputs: ImageBatch) -> List[torch.Tensor]:
        images = list(inputs) if not isinstance(inputs, torch.Tensor) or inputs.dim() == 4 \
            else [inputs]
        for img in images:
            if img.dim() != 3 or img.shape[0] != 3:
                raise ValueError(f'expected images of shape (3, H, W), got {tuple(img.shape)}')
        return [img.to(self.query_features.device) for img in images]

    def crops_per_batch(self, size: Tuple[int, int]) -> int:
        """Crops of ``size`` encoded together: ``crop_batch_size``, or as many as fit the
        memory budget by the encoder's estimate of one crop's peak working set
        (:meth:`~sfp.models.encoder.MethodEncoder.working_set`)."""
        if self.crop_batch_size is not None:
            return self.crop_batch_size
        per_crop = self.encoder.working_set(*size) * torch.finfo(self.compute_dtype).bits // 8
        device = self.query_features.device
        if self.memory_budget_mb is not None:
            budget = self.memory_budget_mb * 2 ** 20
        elif device.type == 'cuda':
            budget = torch.cuda.mem_get_info(device)[0] / 2
        else:
            budget = 2048 * 2 ** 20
        return int(max(1, min(512, budget // per_crop)))

    def encode_crops(self, images: torch.Tensor, contexts: Optional[Sequence[Any]] = None,
                     regions: Optional[Sequence[Any]] = None
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, 3, h, w) equally sized crops -> (B, Q, rows, cols) logits on the method's
        output grid and, from a method that decides labels itself, (B, h, w) labels (else
        None); ``contexts``: each crop's image context (see
        :meth:`~sfp.models.encoder.MethodEncoder.image_context`); ``regions``: each crop's
        regions, for a method that reads them."""
        if self.encoder.uses_masks:
            out = self.encoder(images.to(self.dtype), contexts, regions)
        else:
            out = self.encoder(images.to(self.dtype), contexts)
        logits = out.logits if out.logits is not None else \
            patch_logits(out.features, self.query_features, out.grid)
        return logits.to(self.compute_dtype), out.labels

    def grid_logits(self, images: torch.Tensor,
                    contexts: Optional[Sequence[Any]] = None) -> torch.Tensor:
        """The logits of :meth:`encode_crops`."""
        return self.encode_crops(images, contexts)[0]

    def image_contexts(self, images: Sequence[torch.Tensor]) -> List[Any]:
        """The encoder's context of each whole image (None for most methods)."""
        return [self.encoder.image_context(img.to(self.dtype)) for img in images]

    def image_regions(self, images: Sequence[torch.Tensor],
                      metas: Sequence[dict]) -> List[Optional[ImageRegions]]:
        """Each image's regions from the mask source (found by its ``img_path``, checked
        against its ``ori_shape``), at its original and input sizes; Nones without a
        mask source."""
        if self.mask_source is None:
            return [None] * len(images)
        return [ImageRegions(self.mask_source(meta.get('img_path'), _ori_size(meta),
                                              partial(self._rgb, img)).to(img.device),
                             tuple(img.shape[-2:]))
                for img, meta in zip(images, metas)]

    def _rgb(self, image: torch.Tensor) -> np.ndarray:
        """A normalised (3, H, W) input back to (H, W, 3) uint8 RGB (for a mask generator
        given an image with no file)."""
        pre = self.data_preprocessor
        rgb = image.float() * pre.std.to(image.device) + pre.mean.to(image.device)
        return rgb.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def _empty_votes(self, image: torch.Tensor, max_votes: int) -> Optional[LabelVotes]:
        if not self.encoder.decides_labels:
            return None
        return LabelVotes.empty(self.num_classes, tuple(image.shape[-2:]), max_votes,
                                image.device)

    def window_layout(self, image: torch.Tensor) -> SlidingWindowLayout:
        """The sliding windows of a (3, H, W) image and their place in its logit canvas."""
        stride = self.encoder.logit_stride
        pad_to = stride if self.pad_crops is True else int(self.pad_crops)
        return SlidingWindowLayout.build(*image.shape[-2:], self.slide_crop, self.slide_stride,
                                         stride, pad_to, self.encoder.fixed_grid)

    def slide_maps(self, images: Sequence[torch.Tensor],
                   regions: Optional[Sequence[Optional[ImageRegions]]] = None
                   ) -> List[ImageMaps]:
        """Sliding-window logits (and label votes) of each image, at its input size.

        The crops of all images are encoded together, ``crops_per_batch`` at a time (crops
        of one size per batch).  Each crop's patch-grid logits go to its block of the
        image's canvas; upsampling and averaging the windows are folded into the
        returned :class:`LogitMap`.  A method's own labels of a crop are counted at the
        window's pixels.  ``regions``: each image's (see :meth:`image_regions`).
        """
        regions = regions or [None] * len(images)
        layouts = [self.window_layout(img) for img in images]
        contexts = self.image_contexts(images)
        canvases = [img.new_zeros((self.num_queries, *layout.canvas_shape),
                                  dtype=self.compute_dtype)
                    for img, layout in zip(images, layouts)]
        votes = [self._empty_votes(img, layout.max_coverage)
                 for img, layout in zip(images, layouts)]
        by_size: Dict[Tuple[int, int], list] = defaultdict(list)
        for i, layout in enumerate(layouts):
            for r, c, (y1, y2, x1, x2) in layout.windows():
                by_size[(y2 - y1, x2 - x1)].append((i, r, c, (y1, y2, x1, x2)))
        for size, jobs in by_size.items():
            step = self.crops_per_batch(size)
            for start in range(0, len(jobs), step):
                chunk = jobs[start:start + step]
                crops = torch.stack([layouts[i].crop(images[i], r, c)
                                     for i, r, c, _ in chunk])
                grids, labels = self.encode_crops(
                    crops, [contexts[i] for i, *_ in chunk],
                    [regions[i] and regions[i].window(*box) for i, _, _, box in chunk])
                for k, (i, r, c, (y1, y2, x1, x2)) in enumerate(chunk):
                    canvases[i][(slice(None), *layouts[i].block(r, c))] = grids[k]
                    if labels is not None:
                        votes[i].add(layouts[i].uncrop(labels[k], r, c), slice(y1, y2),
                                     slice(x1, x2))
        return [ImageMaps(layout.logit_map(canvas), vote, regions=region)
                for layout, canvas, vote, region in zip(layouts, canvases, votes, regions)]

    def whole_maps(self, images: Sequence[torch.Tensor],
                   regions: Optional[Sequence[Optional[ImageRegions]]] = None
                   ) -> List[ImageMaps]:
        """Logits of each image encoded whole, at the size of its patch grid (and a
        method's own labels of it)."""
        regions = regions or [None] * len(images)
        results: List[Optional[ImageMaps]] = [None] * len(images)
        contexts = self.image_contexts(images)
        by_shape: Dict[tuple, List[int]] = defaultdict(list)
        for i, img in enumerate(images):
            by_shape[tuple(img.shape)].append(i)
        for shape, indices in by_shape.items():
            step = self.crops_per_batch(shape[-2:])
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                grids, labels = self.encode_crops(torch.stack([images[i] for i in chunk]),
                                                  [contexts[i] for i in chunk],
                                                  [regions[i] and regions[i].input
                                                   for i in chunk])
                for k, i in enumerate(chunk):
                    logits = LogitMap.from_grid(grids[k])
                    if self.resize_via_input:
                        logits = logits.resized(shape[-2:])
                    vote = self._empty_votes(images[i], 1)
                    if vote is not None:
                        vote.add(labels[k], slice(None), slice(None))
                    results[i] = ImageMaps(logits, vote, regions=regions[i])
        return results

    def image_maps(self, images: Sequence[torch.Tensor],
                   metas: Optional[Sequence[dict]] = None,
                   regions: Optional[Sequence[Optional[ImageRegions]]] = None
                   ) -> List[ImageMaps]:
        """Logits on the method's grid of each image, from a method that takes whole images
        and windows them itself (``encodes_whole_images``: Trident), and its refinement."""
        metas = list(metas) if metas is not None else [None] * len(images)
        regions = list(regions) if regions is not None else [None] * len(images)
        maps = []
        for image, meta, region in zip(images, metas, regions):
            out, _, refine = self.encoder.encode_image(image.to(self.dtype), meta)
            logits = patch_logits(out.features, self.query_features, out.grid)[0]
            maps.append(ImageMaps(LogitMap.from_grid(logits.to(self.compute_dtype)),
                                  refine=refine, regions=region))
        return maps

    def coarse_maps(self, images: Sequence[torch.Tensor],
                    metas: Optional[Sequence[dict]] = None,
                    regions: Optional[Sequence[Optional[ImageRegions]]] = None
                    ) -> List[ImageMaps]:
        """Query logits before the final resize, factored: at the input size in sliding
        mode, on the patch grid in whole-image mode; and a method's label votes at the
        input size.

        An image thinner than one patch (a 1 x 300 photo resized to 7 x 2048) has no patch
        to encode: it is padded with zeros (the mean colour, after normalisation) to one
        patch, and its maps are those of the padded image cut back to its own extent.

        ``metas``: each image's metainfo (``ori_shape``, ``img_path``), for a method that
        reads the whole image itself (Trident's SAM reads the file at its original size).
        ``regions``: each image's, for a method that reads them (see :meth:`image_regions`).
        """
        if self.encoder.encodes_whole_images:
            return self.image_maps(images, metas, regions)
        patch = self.encoder.visual.patch_size
        padded = [_pad_to_min_size(img, patch) for img in images]
        maps = self.slide_maps(padded, regions) if self.slide_crop > 0 \
            else self.whole_maps(padded, regions)
        for m, p in zip(maps, padded):
            if self.propagation is not None:
                m.logits = self.propagated(p, m.logits)
            if self.synonyms_at_input:
                m.logits = LogitMap.from_grid(self.merge_synonyms(
                    m.logits.resized(p.shape[-2:]).dense()))
        for m, p, img in zip(maps, padded, images):
            if p is not img:
                m.logits = m.logits.resized(p.shape[-2:]).cropped(*img.shape[-2:])
                if m.votes is not None:
                    m.votes = m.votes.cropped(*img.shape[-2:])
        return maps

    def propagated(self, image: torch.Tensor, logits: LogitMap) -> LogitMap:
        """A (3, H, W) image's logits after the label propagation: over the patch graph of
        its windows' logit cells (a cell's position: its centre in input pixels), then
        (``pixel_refine``) over its pixels at the input size."""
        prop = self.propagation
        if prop.patch:
            nodes = self.patch_nodes(image, logits)
            out = prop.propagate_patches(nodes.scores, nodes.features, nodes.positions)
            logits = LogitMap(nodes.canvas(out, logits.grid), logits.rows, logits.cols)
        if prop.pixel_refine:
            dense = logits.resized(image.shape[-2:]).dense()
            logits = LogitMap.from_grid(prop.propagate_pixels(dense, unit_rgb(image)))
        return logits

    def patch_nodes(self, image: torch.Tensor, logits: LogitMap) -> PatchNodes:
        """The nodes of the patch-level propagation of a (3, H, W) image whose
        :meth:`coarse_maps` logits are ``logits``: every logit cell of every window."""
        windows = self._windows(image)
        blocks = [block for _, _, block in windows]
        cells = [logits.grid[(slice(None), *block)] for block in blocks]
        scores = torch.cat([c.flatten(1).T for c in cells])  # (N, Q), windows in order
        grids = [tuple(c.shape[-2:]) for c in cells]
        positions = node_positions([start for _, start, _ in windows], grids,
                                   self.encoder.logit_stride).to(scores.device)
        return PatchNodes(scores, self._vfm_nodes(windows, grids), positions, blocks, grids)

    def _windows(self, image: torch.Tensor) -> List[tuple]:
        """(crop, (top, left) of its grid in input pixels, its canvas block) of every
        window of an image, in the order of their nodes."""
        if self.slide_crop == 0:
            return [(image, (0, 0), (slice(None), slice(None)))]
        layout = self.window_layout(image)
        out = []
        for r, c, (y1, _, x1, _) in layout.windows():
            top = y1 - (layout.row_pads[r][0] if layout.row_pads else 0)
            left = x1 - (layout.col_pads[c][0] if layout.col_pads else 0)
            out.append((layout.crop(image, r, c), (top, left), layout.block(r, c)))
        return out

    def _vfm_nodes(self, windows: Sequence[tuple], grids: Sequence[Tuple[int, int]]
                   ) -> torch.Tensor:
        """(N, C) VFM features of the windows' crops on their logit grids, windows in
        order; crops of one size (and grid) go through the VFM together, a memory
        budget's worth at a time."""
        by_shape: Dict[tuple, List[int]] = defaultdict(list)
        for i, ((crop, _, _), grid) in enumerate(zip(windows, grids)):
            by_shape[(tuple(crop.shape[-2:]), grid)].append(i)
        features: List[Optional[torch.Tensor]] = [None] * len(windows)
        for (size, grid), indices in by_shape.items():
            step = self.crops_per_batch(size)
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                crops = unit_rgb(torch.stack([windows[i][0] for i in chunk]))
                for i, f in zip(chunk, self.propagation.vfm_features(crops, grid)):
                    features[i] = f
        return torch.cat(features)

    def merge_synonyms(self, logits: torch.Tensor) -> torch.Tensor:
        """(Q, H, W) query logits -> (C, H, W): each class's max over its queries."""
        if self.num_classes == logits.shape[0]:
            return logits
        out = logits.new_zeros((self.num_classes, *logits.shape[1:]))
        index = self.query_idx.view(-1, 1, 1).expand_as(logits)
        return out.scatter_reduce_(0, index, logits, 'amax', include_self=False)

    @property
    def logit_query_idx(self) -> torch.Tensor:
        """The class of each channel of the logits ``inference`` gives: the queries' own,
        or each class once with ``synonyms_at_input``."""
        if self.synonyms_at_input:
            return torch.arange(self.num_classes, device=self.query_idx.device)
        return self.query_idx

    def coarse_logits(self, images: Sequence[torch.Tensor],
                      metas: Optional[Sequence[dict]] = None,
                      regions: Optional[Sequence[Optional[ImageRegions]]] = None
                      ) -> List[LogitMap]:
        """The query logits of :meth:`coarse_maps`."""
        return [m.logits for m in self.coarse_maps(images, metas, regions)]

    @torch.no_grad()
    def inference(self, inputs: ImageBatch, batch_img_metas: Sequence[dict],
                  regions: Optional[Sequence[Optional[ImageRegions]]] = None
                  ) -> List[torch.Tensor]:
        """Query logits (Q, H, W) of each image at its ``ori_shape``, before the softmax.

        For a method that decides labels itself (CLIPtrase), these are its logits before
        its vote; :meth:`predict` gives the voted labels.  ``regions``: each image's, when
        read already (else from the mask source).
        """
        images = self._image_list(inputs)
        if regions is None:
            regions = self.image_regions(images, batch_img_metas)
        logits = [m.resized(_ori_size(meta)).dense()
                  for m, meta in zip(self.coarse_logits(images, batch_img_metas, regions),
                                     batch_img_metas)]
        if self.pamr is not None:
            logits = [self._refine(img, x) for img, x in zip(images, logits)]
        return logits

    def _refine(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        image = F.interpolate(image[None].to(logits.dtype), size=logits.shape[-2:],
                              mode='bilinear', align_corners=False)
        return self.pamr(image, logits[None])[0]

    @torch.no_grad()
    def predict(self, inputs: ImageBatch,
                data_samples: Optional[List[SegDataSample]] = None) -> List[SegDataSample]:
        """Segment a batch; each data sample gets ``pred_sem_seg`` (1 x H x W) and, with
        ``return_probs``, ``seg_logits`` (class probabilities, C x H x W) at its
        ``ori_shape``; with a mask source, ``pred_regions`` (its region map, 1 x H x W).
        Without ``data_samples`` the inputs' own sizes are the output sizes.

        Without PAMR, full-resolution logits are produced in bands of rows, so memory
        stays bounded for very large images.

        A method that decides each crop's labels itself (``decides_labels``: CLIPtrase's
        vote) is not argmaxed: every pixel takes the class most of the windows covering it
        gave it, ``seg_logits`` holds the fraction of those windows per class (resized to
        the output size like logits), and ``prob_thd`` / ``area_thd`` apply to those.

        A method's refinement (Trident's SAM prompts, ``ImageMaps.refine``) then rewrites
        the labels and ``seg_logits`` (Trident: its refined map replaces the probabilities).
        """
        images = self._image_list(inputs)
        if data_samples is None:
            data_samples = [SegDataSample(metainfo=dict(ori_shape=tuple(img.shape[-2:]),
                                                         img_shape=tuple(img.shape[-2:])))
                            for img in images]
        metas = [s.metainfo for s in data_samples]
        regions = self.image_regions(images, metas)
        if self.pamr is not None:
            logits = self.inference(images, metas, regions)
            self.postprocess_result(logits, data_samples)
            for sample, region in zip(data_samples, regions):
                sample.pred_sem_seg.data = self._corrected(sample.pred_sem_seg.data, region)
            return data_samples
        for maps, sample in zip(self.coarse_maps(images, metas, regions), data_samples):
            size = _ori_size(sample.metainfo)
            if maps.votes is not None:
                probs, labels = postprocess_class_map(
                    maps.votes.fractions(self.compute_dtype).resized(size), self.prob_thd,
                    self.area_thd, self.return_probs)
            else:
                probs, labels = postprocess_logit_map(
                    maps.logits.resized(size), self.logit_query_idx, self.num_classes,
                    self.logit_scale, self.prob_thd, self.area_thd,
                    self.return_probs or maps.refine is not None)
            if maps.refine is not None:
                probs, labels = maps.refine(probs, labels)
            self._store(sample, probs if self.return_probs else None,
                        self._corrected(labels, maps.regions))
            if maps.regions is not None:  # what the demo and the web page show
                sample.set_data({'pred_regions': PixelData(
                    data=maps.regions.original.label_map()[None])})
        return data_samples

    def _corrected(self, labels: torch.Tensor, regions: Optional[ImageRegions]) -> torch.Tensor:
        """(1, H, W) labels after map correction (as they are without it)."""
        if not self.map_correction:
            return labels
        return correct_map(labels[0], regions.original.label_map(), self.num_classes)[None]

    def postprocess_result(self, seg_logits: Sequence[torch.Tensor],
                           data_samples: List[SegDataSample]) -> List[SegDataSample]:
        """Post-process full-resolution query logits into each data sample."""
        for logits, sample in zip(seg_logits, data_samples):
            probs, labels = postprocess_logits(logits, self.logit_query_idx, self.num_classes,
                                               self.logit_scale, self.prob_thd, self.area_thd)
            self._store(sample, probs if self.return_probs else None, labels)
        return data_samples

    @staticmethod
    def _store(sample: SegDataSample, probs: Optional[torch.Tensor],
               labels: torch.Tensor) -> None:
        if probs is not None:
            sample.set_data({'seg_logits': PixelData(data=probs)})
        sample.set_data({'pred_sem_seg': PixelData(data=labels)})

    # -- the rest of mmseg's segmentor interface --------------------------------------
    def extract_feat(self, inputs: ImageBatch) -> List[torch.Tensor]:
        """The method's patch features (N, D) of each whole image."""
        return [self.encoder(img[None].to(self.dtype)).features[0]
                for img in self._image_list(inputs)]

    def encode_decode(self, inputs: ImageBatch,
                      batch_img_metas: Sequence[dict]) -> List[torch.Tensor]:
        return self.inference(inputs, batch_img_metas)

    def _forward(self, inputs: ImageBatch,
                 data_samples: Optional[List[SegDataSample]] = None) -> List[torch.Tensor]:
        images = self._image_list(inputs)
        metas = ([s.metainfo for s in data_samples] if data_samples is not None else
                 [dict(ori_shape=tuple(img.shape[-2:])) for img in images])
        return self.inference(images, metas)

    def loss(self, inputs, data_samples):
        raise RuntimeError('SFP is training-free: the segmentor has no loss to train with')

    # -- what mmseg's apis and tools set on or load into a model -----------------------
    @property
    def dataset_meta(self) -> dict:
        """``classes`` (a name per class) and ``palette`` (an RGB colour per class), as
        mmseg's visualiser, ``show_result_pyplot`` and ``MMSegInferencer`` read them.

        Those of the dataset in the config that mmseg's ``init_model`` and
        ``MMSegInferencer`` attach to the model (``model.cfg``) when it names each class
        (see :func:`sfp.datasets.dataset_meta`), else the vocabulary's first synonyms.
        """
        if self._dataset_meta is not None:
            return self._dataset_meta
        dataset = getattr(self, 'cfg', None) and self.cfg.get('test_dataloader', {}).get(
            'dataset', {}).get('type')
        return dataset_meta(dataset or None, self._class_names)

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        # mmseg's init_model and MMSegInferencer set a checkpoint's meta here, or
        # Cityscapes' classes when the checkpoint has none. The vocabulary fixes the
        # classes: a meta naming other classes would mislabel every prediction.
        current = self.dataset_meta
        if list(meta.get('classes') or ()) != list(current['classes']):
            print_log(f'dataset_meta naming {len(meta.get("classes") or ())} other classes '
                      f'is ignored: the vocabulary\'s {self.num_classes} classes keep their '
                      f'names', logger='current', level=logging.WARNING)
            return
        self._dataset_meta = dict(current, **meta)

    @property
    def class_names(self) -> List[str]:
        """The name of each class (label i is ``class_names[i]``): ``dataset_meta``'s."""
        return list(self.dataset_meta['classes'])

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Load this segmentor's own weights as any module does; a CLIP checkpoint is
        taken only when it is ``clip_path``'s (mmseg's tools want a checkpoint: the same
        file serves), and anything else is refused in one line."""
        own = self.state_dict()
        keys = [k for k in state_dict if k.startswith(prefix)]
        if keys and not any(k[len(prefix):] in own for k in keys):
            weights = {k[len(prefix):]: state_dict.pop(k) for k in keys}
            self._check_clip_checkpoint(weights, example=next(iter(own)))
            state_dict.update({prefix + k: v for k, v in own.items()})  # loads as a no-op
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _check_clip_checkpoint(self, weights: dict, example: str) -> None:
        if not clip.is_clip_state_dict(weights):
            raise clip.CheckpointError(
                f'the checkpoint holds neither this segmentor\'s weights (keys such as '
                f'{example}) nor a CLIP (keys such as visual.conv1.weight); it has '
                f'{len(weights)} keys, e.g. {", ".join(list(weights)[:3])}. The weights '
                f'come from clip_path: pass that file as the checkpoint')
        if self.clip_checkpoint is None or not clip.same_weights(
                weights, clip.read_state_dict(self.clip_checkpoint)):
            source = self.clip_checkpoint or 'a CLIP model given as clip_path'
            raise clip.CheckpointError(
                f'the checkpoint is a CLIP other than clip_path ({source}), whose image '
                f'tower and class features the segmentor holds; to run that CLIP, set '
                f'model.clip_path to its file (e.g. --cfg-options model.clip_path=FILE)')
        print_log(f'the checkpoint is the CLIP of clip_path ({self.clip_checkpoint}), whose '
                  f'weights the segmentor holds already: nothing else to load',
                  logger='current')


def _encoder_type(encoder: Optional[dict]) -> type:
    """The encoder class a segmentor's ``encoder`` argument names (None: SFP's)."""
    if encoder is None:
        return SFPEncoder
    if not isinstance(encoder, dict) or 'type' not in encoder:
        raise ValueError(f'encoder must be a config dict with a "type" (one of '
                         f'{", ".join(sorted(ENCODERS.module_dict))}), got {encoder!r}')
    return registered_type(ENCODERS, encoder['type'], 'encoder type')


def _release_knobs(encoder_type: type, **knobs: Optional[float]) -> dict:
    """SFP's release arguments given to the segmentor (not None), for its encoder;
    ``cross_s`` / ``cross_e`` given with another method are an error."""
    given = {k: v for k, v in knobs.items() if v is not None}
    if issubclass(encoder_type, SFPEncoder):
        return given
    foreign = sorted(set(given) - {'res_cls'})
    if foreign:
        raise ValueError(f'{" and ".join(foreign)} set, but they choose the blocks of SFP\'s '
                         f'integrator; {encoder_type.__name__} has none (a method\'s own '
                         f'arguments go in encoder=dict(type=..., ...))')
    return {}


def _methods_with(flag: str) -> List[str]:
    """Short names of the registered methods whose encoder class sets ``flag``."""
    return sorted(name for name, cls in ENCODERS.module_dict.items()
                  if getattr(cls, flag) and name[:1].islower())


def sam_methods() -> List[str]:
    """Short names of the registered methods that read SAM."""
    return _methods_with('uses_sam')


def vfm_methods() -> List[str]:
    """Short names of the registered methods that read a vision foundation model."""
    return _methods_with('uses_vfm')


def _tower(path: Union[str, Path, nn.Module, None], load: Callable, missing: str,
           device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A second model an encoder reads (a VFM, SAM): loaded from a name or file, or a loaded
    one moved (in place, so that segmentors sharing it keep sharing it) to the device and
    precision; ``missing`` is the error without one."""
    if path is None:
        raise ValueError(missing)
    if isinstance(path, nn.Module):
        return path.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return load(path, device=device, dtype=dtype)


def _mask_spec(masks: MaskSpec, **folders: Union[str, Path, None]) -> MaskSpec:
    """The segmentor's mask source: a folder under a release's name replaces ``masks``."""
    given = {name: folder for name, folder in folders.items() if folder is not None}
    if len({str(folder) for folder in given.values()}) > 1:
        raise ValueError(f'{" and ".join(given)} name different mask folders '
                         f'({", ".join(map(str, given.values()))}); set one')
    return next(iter(given.values())) if given else masks


def build_propagation(cfg: dict, vfm: Optional[nn.Module]) -> LabelPropagation:
    """The segmentor's ``propagation`` dict built, its patch level on ``vfm``; bad
    arguments are a ValueError naming them."""
    try:
        return LabelPropagation(vfm=vfm if cfg.get('patch', True) else None, **cfg)
    except TypeError as err:
        raise ValueError(f'bad arguments in propagation={cfg!r}: {err}') from err


def _cache_key(text_cache: Union[bool, str, Path], checkpoint: Optional[Path]) -> Optional[Path]:
    """The checkpoint file that keys the text cache, or None for no cache."""
    if isinstance(text_cache, (str, Path)):
        return Path(text_cache)
    return checkpoint if text_cache else None


def _pad_to_min_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, h, w) -> (3, max(h, size), max(w, size)), zero-padded at the bottom and right;
    the image itself when it is large enough."""
    height, width = image.shape[-2:]
    if height >= size and width >= size:
        return image
    return F.pad(image, (0, max(0, size - width), 0, max(0, size - height)))


def _refuse_mmseg_arguments(pretrained: Optional[str], train_cfg: Optional[dict],
                            test_cfg: Optional[dict]) -> None:
    """mmseg's segmentor arguments that would mean something else here: one line each."""
    if pretrained:
        raise ValueError(f'pretrained={pretrained!r}: the CLIP weights come from clip_path; '
                         f'set clip_path={str(pretrained)!r} instead')
    if train_cfg:
        raise ValueError('train_cfg: SFP is training-free, there is nothing to train; '
                         'remove it')
    if test_cfg:
        raise ValueError(f'test_cfg={test_cfg!r}: the window is set by slide_crop and '
                         f'slide_stride (slide_crop=0 encodes the whole image); remove it')


def _ori_size(meta: dict) -> Tuple[int, int]:
    return tuple(int(s) for s in meta['ori_shape'][:2])


def _check_arguments(**values) -> None:
    """Clear errors for out-of-range constructor arguments."""
    rules = {
        'prob_thd': (lambda v: 0 <= v <= 1, 'a probability in [0, 1]'),
        'logit_scale': (lambda v: v > 0, 'positive'),
        'slide_crop': (lambda v: v is None or isinstance(v, int) and v >= 0,
                       'a non-negative int (0 or None = whole image)'),
        'slide_stride': (lambda v: v is None or isinstance(v, int) and v > 0,
                         'a positive int (None only for the whole image)'),
        'area_thd': (lambda v: v is None or 0 <= v < 1, 'None or a fraction in [0, 1)'),
        'crop_batch_size': (lambda v: v is None or isinstance(v, int) and v > 0,
                            'None (sized to the memory budget) or a positive int'),
        'pamr_steps': (lambda v: isinstance(v, int) and v >= 0, 'a non-negative int'),
        'memory_budget_mb': (lambda v: v is None or v > 0, 'None or a positive number'),
        'pad_crops': (lambda v: isinstance(v, bool) or isinstance(v, int) and v > 0,
                      'a bool or a positive int (the multiple to pad crops to)'),
    }
    for name, value in values.items():
        ok, expected = rules[name]
        try:
            valid = ok(value)
        except TypeError:
            valid = False
        if not valid:
            raise ValueError(f'{name} must be {expected}, got {value!r}')
    if values['slide_crop'] and values['slide_stride'] is None:
        raise ValueError(f'slide_stride must be a positive int for sliding windows '
                         f'(slide_crop = {values["slide_crop"]}), got None')
