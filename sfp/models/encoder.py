"""What every method shares: blocks 1..L-1 of a CLIP ViT walked once, with outlier
purification as a hook in that walk.

A method is a :class:`MethodEncoder` subclass that says which block outputs it reads
(``kept_blocks``, ``summed_blocks``) and which blocks' attention weights
(``attention_blocks``), and implements :meth:`MethodEncoder.head`, its
replacement of the last block; everything else (embedding, the walk, detection and
mitigation, the projection into CLIP's joint space) is here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..clip.model import VisionTransformer
from ..masks import RegionMasks
from ..registry import ENCODER_PARTS, build_from_registry
from .detectors import OutlierDetector, build_detector
from .mitigation import NeighbourMeanMitigation
from .outliers import Outliers

PartConfig = Union[nn.Module, dict, None]


def build_part(part: PartConfig, default_type: type) -> Optional[nn.Module]:
    """A built part as it is, None as None, or a config dict built from
    :data:`~sfp.registry.ENCODER_PARTS` (``type`` defaults to ``default_type``)."""
    if part is None or isinstance(part, nn.Module):
        return part
    if not isinstance(part, dict):
        raise ValueError(f'expected a {default_type.__name__}, a config dict or None, '
                         f'got {part!r}')
    return build_from_registry(ENCODER_PARTS, dict(dict(type=default_type.__name__), **part),
                               'encoder part type')


@dataclass
class EncoderOutput:
    """Patch features of a batch of crops and the outliers found in them.

    Attributes:
        features: (B, N, D) patch features in CLIP's joint space (not normalised).
        outliers: outliers found at the detection block (None without a detector).
        grid: grid (rows, cols) of the features, N = rows * cols: the CLIP patch grid, or
            a method's own (ProxyCLIP's features sit on its VFM's grid).
        logits: (B, Q, rows, cols) query logits when the method computes its own (CASS
            adjusts the text per crop; CLIPtrase multiplies by the CLS logits on VOC20);
            None means the cosine of ``features`` with the query features, which the
            segmentor takes.
        labels: (B, H, W) class of every pixel of each (H, W) crop when the method decides
            the labels itself (CLIPtrase's vote within regions), else None.  The
            segmentor's ``predict`` then counts these votes over the windows instead of
            taking the argmax of the logits (see ``MethodEncoder.decides_labels``).
    """

    features: torch.Tensor
    outliers: Optional[Outliers]
    grid: Tuple[int, int]
    logits: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None


@dataclass
class BlockWalk:
    """What walking blocks 1..L-1 hands a method.

    Attributes:
        tokens: (B, 1 + N, C) output of block L-1, CLS first; with purification, its
            outlier patches are already mitigated.
        outputs: block number -> (B, 1 + N, C) output of each block in ``kept_blocks``.
        summed: (B, 1 + N, C) sum of the outputs of ``summed_blocks`` (None if none).
        outliers: outliers found at the detection block (None without purification).
        grid: patch grid (rows, cols).
        attention: block number -> (B, heads, 1 + N, 1 + N) attention weights of each
            block in ``attention_blocks``.
        images: (B, 3, H, W) the crops walked, CLIP-normalised (ResCLIP's first pass
            refines its labels on them).
        regions: the crops' class-agnostic regions where the caller has them (a method
            that reads them, ``uses_masks``, computes its attention from them: CorrCLIP's
            ``attention_map``); the walk itself does not read them.
    """

    tokens: torch.Tensor
    outputs: Dict[int, torch.Tensor]
    summed: Optional[torch.Tensor]
    outliers: Optional[Outliers]
    grid: Tuple[int, int]
    attention: Dict[int, torch.Tensor] = field(default_factory=dict)
    images: Optional[torch.Tensor] = None
    regions: Optional[Any] = None


class MethodEncoder(nn.Module):
    """Base of every method's image encoder.

    Blocks 1..L-1 run unchanged, through the fused attention kernel; only a block whose
    attention a detector or the method reads materialises its weights.  With a ``detector``
    (purification), outliers are detected on the output of ``detect_block`` and
    mitigated in the patches of block L-1's output before the method's :meth:`head`
    sees them, as SFP does; ``stream_mitigation_blocks`` also purify inside the stream.
    Block numbers count from 1.

    Args:
        visual: the CLIP ViT image tower (its weights are used as they are).
        detector: outlier detector (an instance, a ``pm`` name or a config dict), or
            None for no purification.
        mitigation: replaces outlier tokens (default: neighbour mean).
        detect_block: block whose output the detector reads (default L-1).
        stream_mitigation_blocks: blocks after which outliers are also detected and
            mitigated inside the forward stream, so later blocks see purified tokens.
        kept_blocks: blocks whose outputs :meth:`head` reads (``BlockWalk.outputs``).
        summed_blocks: (first, last) inclusive range of blocks whose outputs are summed
            (``BlockWalk.summed``), or None.
        attention_blocks: blocks whose attention weights :meth:`head` reads
            (``BlockWalk.attention``; ResCLIP's residual cross-correlation).
    """

    #: Whether the method purifies when the segmentor's ``purify`` is left unset.
    purify_by_default = False
    #: Whether the method reads the vocabulary: the segmentor then passes its
    #: ``query_features`` (Q, D), L2-normalised, and ``query_idx`` (Q,) (class of each
    #: query) to the constructor (ResCLIP's first pass, CASS's text adjustment).
    uses_vocabulary = False
    #: Whether the method reads a vision foundation model (ProxyCLIP, CASS): the segmentor
    #: then loads one from its ``vfm_path`` and passes the tower (in the model's device and
    #: precision) to the constructor as ``vfm``.
    uses_vfm = False
    #: Whether the method reads SAM (Trident): the segmentor then loads it from its
    #: ``sam_path`` and passes it (image encoder, prompt encoder and mask decoder, in the
    #: model's device and precision) to the constructor as ``sam``.
    uses_sam = False
    #: Whether the method takes each whole image and windows it itself (Trident splices its
    #: windows' features, not their logits): the segmentor passes its ``slide_crop`` and
    #: ``slide_stride`` to the constructor and calls :meth:`encode_image` per image, with
    #: the image's metainfo, instead of encoding windows.
    encodes_whole_images = False
    #: Materialise every walked block's attention weights, as the releases do (no fused
    #: kernel); same results, only slower.  For side-by-side timing with a release.
    materialise_all_attention = False
    #: Whether the encoder returns each crop's labels (``EncoderOutput.labels``): its own
    #: decision at the crop's pixels, which the segmentor's ``predict`` takes over the
    #: argmax of the logits (CLIPtrase's region vote).
    decides_labels = False
    #: Whether the method reads class-agnostic regions (LaVG, CorrCLIP): the segmentor
    #: then needs a mask source (``masks``, see :mod:`sfp.masks`) and passes
    #: :meth:`forward` ``regions``, each crop's :class:`~sfp.masks.RegionMasks`: its
    #: window of its image's regions resized with the image to the input size (the
    #: window itself, without the zeros ``pad_crops`` adds around it).
    uses_masks = False

    def __init__(self,
                 visual: VisionTransformer,
                 detector: Union[OutlierDetector, str, dict, None] = None,
                 mitigation: PartConfig = None,
                 detect_block: Optional[int] = None,
                 stream_mitigation_blocks: Sequence[int] = (),
                 kept_blocks: Sequence[int] = (),
                 summed_blocks: Optional[Tuple[int, int]] = None,
                 attention_blocks: Sequence[int] = ()):
        super().__init__()
        self.visual = visual
        if isinstance(detector, (str, dict)):
            detector = build_detector(detector)
        self.detector = detector
        self.mitigation = build_part(mitigation, NeighbourMeanMitigation) \
            or NeighbourMeanMitigation()
        last = visual.num_blocks - 1  # the final block is the method's
        self.detect_block = last if detect_block is None else detect_block
        self.stream_mitigation_blocks = tuple(sorted(set(stream_mitigation_blocks)))
        self.kept_blocks = tuple(sorted(set(kept_blocks)))
        self.summed_blocks = summed_blocks
        self.attention_blocks = tuple(sorted(set(attention_blocks)))
        checked = {'detect_block': self.detect_block}
        checked.update({f'stream_mitigation_blocks[{i}]': b
                        for i, b in enumerate(self.stream_mitigation_blocks)})
        checked.update({f'attention_blocks[{i}]': b
                        for i, b in enumerate(self.attention_blocks)})
        if summed_blocks is not None:
            checked.update({'first summed block': summed_blocks[0],
                            'last summed block': summed_blocks[1]})
        self.check_blocks(checked)
        if self.stream_mitigation_blocks and detector is None:
            raise ValueError('stream_mitigation_blocks needs an outlier detector')

    def check_blocks(self, blocks: Dict[str, int]) -> None:
        """Raise a clear error for a block number outside 1..L-1."""
        last = self.visual.num_blocks - 1
        for name, block in blocks.items():
            if not 1 <= block <= last:
                raise ValueError(f'{name} = {block}: must be a block from 1 to {last} of this '
                                 f'{self.visual.num_blocks}-block ViT (the last block is the '
                                 f'method\'s)')

    @property
    def last_block(self) -> nn.Module:
        return self.visual.blocks[self.visual.num_blocks - 1]

    @property
    def logit_stride(self) -> int:
        """Input pixels per cell of the method's output grid (CLIP's patch size; a method
        whose features sit on another grid says so here)."""
        return self.visual.patch_size

    @property
    def fixed_grid(self) -> Optional[Tuple[int, int]]:
        """The output grid (rows, cols) of a method whose grid does not depend on the crop's
        size (None: ``logit_stride``-pixel cells)."""
        return None

    def working_set(self, height: int, width: int) -> int:
        """An estimate, in elements, of one crop's peak working memory: tokens and MLP
        activations of a block, the materialised attention of a block, the N x N
        guidance matrices.  The segmentor sizes crop batches from it."""
        rows, cols = self.visual.grid_size(height, width)
        n = rows * cols + 1
        return n * self.visual.width * 12 + 2 * self.visual.heads * n * n + 6 * n * n

    def image_context(self, image: torch.Tensor) -> Any:
        """What the method needs from a whole (3, H, W) image before its crops are encoded
        (None: nothing).  The segmentor calls it once per image and hands the result to
        :meth:`forward` with each of that image's crops (CASS: the whole image's global
        vector and its seeded random generator)."""
        return None

    def encode_image(self, image: torch.Tensor, meta: Optional[dict] = None
                     ) -> Tuple[EncoderOutput, Any, Optional[Any]]:
        """For a method that ``encodes_whole_images``: one (3, H, W) image and its metainfo
        -> its features (1, N, D) on the method's grid, what it traced, and its refinement
        of the final maps (a callable ``(probs, labels) -> (probs, labels)`` at the output
        size, or None)."""
        raise NotImplementedError

    def attention_map(self, walk: BlockWalk) -> Optional[Tuple[torch.Tensor, Tuple[int, int]]]:
        """The last block's attention weights (B, heads, T, T) on a walk and the grid of
        their patch tokens, for a method that computes them beyond one attention call on
        the walked tokens (ResCLIP's second pass, whose maps come from a first pass;
        ProxyCLIP's, from its VFM's view of the crops, on the VFM's grid), or whose
        weights read the values themselves (CLIPtrase's v-v term).  None (the
        default) lets :func:`sfp.analysis.last_block_attention` read them out of the
        method's attention code."""
        return None

    def _wants_attention(self, block: int) -> bool:
        if self.materialise_all_attention or block in self.attention_blocks:
            return True
        return (self.detector is not None and self.detector.needs_attention
                and (block == self.detect_block or block in self.stream_mitigation_blocks))

    def _mitigate(self, tokens: torch.Tensor, outliers: Outliers) -> torch.Tensor:
        """(B, 1 + N, C) tokens with their outlier patches mitigated (CLS unchanged)."""
        patches = self.mitigation(tokens[:, 1:], outliers.mask(), outliers.grid)
        return torch.cat([tokens[:, :1], patches], dim=1)

    def walk(self, images: torch.Tensor) -> BlockWalk:
        """Run blocks 1..L-1 on (B, 3, H, W) CLIP-normalised crops (see the class doc)."""
        grid = self.visual.grid_size(*images.shape[-2:])
        x = self.visual.embed(images)  # (B, 1 + N, C)
        outputs: Dict[int, torch.Tensor] = {}
        attentions: Dict[int, torch.Tensor] = {}
        summed = detected = None
        first, last = self.summed_blocks or (0, -1)
        for index, block in enumerate(self.visual.blocks[:self.visual.num_blocks - 1], start=1):
            if self._wants_attention(index):
                x, attention = block.forward_with_weights(x)
            else:
                x, attention = block(x), None
            if index == self.detect_block:
                detected = (x, attention)
            if index in self.stream_mitigation_blocks:
                x = self._mitigate(x, self.detector(x, attention, grid))
            if first <= index <= last:
                summed = x if summed is None else summed + x
            if index in self.kept_blocks:
                outputs[index] = x
            if index in self.attention_blocks:
                attentions[index] = attention
        outliers = None
        if self.detector is not None:
            outliers = self.detector(detected[0], detected[1], grid)
            x = self._mitigate(x, outliers)
        return BlockWalk(x, outputs, summed, outliers, grid, attentions, images)

    def head(self, walk: BlockWalk) -> torch.Tensor:
        """The method's last block (and whatever it adds): (B, N, C) patch tokens, to be
        projected with ln_post and the visual projection."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor,
                contexts: Optional[Sequence[Any]] = None,
                regions: Optional[Sequence[RegionMasks]] = None) -> EncoderOutput:
        """Encode a batch of equally sized crops (B, 3, H, W), CLIP-normalised;
        ``contexts`` holds the :meth:`image_context` of each crop's image (None when the
        crops are encoded on their own); ``regions`` each crop's regions (only for a
        method that ``uses_masks``)."""
        walk = self.walk(images)
        return EncoderOutput(self.visual.project(self.head(walk)), walk.outliers, walk.grid)


class LastBlockAttentionEncoder(MethodEncoder):
    """A method that only swaps the last block's attention (ClearCLIP's family, SCLIP,
    NACLIP).

    The attention of :meth:`attention` runs over all tokens, CLS included, and goes
    through the block's out_proj.  With ``keep_residual`` the block keeps its structure,
    ``y = x + attn(ln_1(x)); y = y + mlp(ln_2(y))``; otherwise its output is the
    attention alone (no residual, no FFN: ClearCLIP's ``ignore_residual``).

    Args:
        keep_residual: as above; None takes the method's own setting.
        **kwargs: :class:`MethodEncoder` arguments (purification).
    """

    #: The release's choice for the method (see ``keep_residual``).
    keep_residual = False

    def __init__(self, visual: VisionTransformer, keep_residual: Optional[bool] = None,
                 **kwargs):
        super().__init__(visual, **kwargs)
        if keep_residual is not None:
            self.keep_residual = keep_residual

    def attention(self, block: nn.Module, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        """The method's attention: block ``ln_1`` output (B, 1 + N, C) -> per-head
        attention output (B, heads, 1 + N, head_dim), before out_proj."""
        raise NotImplementedError

    def block_output(self, walk: BlockWalk) -> torch.Tensor:
        """The method's last block on the walked tokens: (B, 1 + N, C), CLS first."""
        block, x = self.last_block, walk.tokens
        out = block.attn.merge_heads(self.attention(block, block.ln_1(x), walk.grid))
        if self.keep_residual:
            out = x + out
            out = out + block.mlp(block.ln_2(out))
        return out

    def head(self, walk: BlockWalk) -> torch.Tensor:
        return self.block_output(walk)[:, 1:]
