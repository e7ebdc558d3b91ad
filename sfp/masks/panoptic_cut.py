"""LaVG's panoptic cut (Kang & Cho, ECCV 2024, arXiv 2408.04961; release
dahyun-kang/lavg@2db88e5, ``panoptic_cut/``): class-agnostic object masks of an image from
DINO ViT-B/8 keys by iterated Normalized Cut, each refined by a dense CRF.

Per image: the image squashed to ``imgsize`` x ``imgsize`` (PIL LANCZOS); DINO's keys of
its last block; ``N`` rounds of NCut on the tokens no earlier mask took (the Fiedler
vector of the thresholded cosine affinity, split at its mean, the side of its peak, the
4-connected component holding the peak); each round's mask refined by Kraehenbuehl's
dense CRF (``pydensecrf``: its permutohedral filtering is the release's own float32
computation) and kept when the CRF keeps it (IoU >= 0.5), then resized back to the
image with PIL's bicubic and thresholded.  The masks may overlap after the CRF.

The eigensolver solves the normalised Laplacian's eigenproblem to machine precision in
float64 (the release runs ``torch.lobpcg`` from an unseeded random start, whose sign and
3.5e-4 tolerance make its masks one draw among several; the sign here is fixed by making
the entry of largest magnitude positive, and the release's choice between the two sides
of the cut is taken as when lobpcg returns that sign).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from scipy.sparse.linalg import eigsh
from torch import nn

from ..registry import MASK_GENERATORS
from .regions import RegionMasks
from .sources import MaskGenerator

#: The release's CRF constants (``panoptic_cut/crf.py``).
CRF_SETTINGS = dict(MAX_ITER=10, POS_W=7, POS_XY_STD=3, Bi_W=10, Bi_XY_STD=50, Bi_RGB_STD=5)
_FEATURES = {'q': 0, 'k': 1, 'v': 2}


@dataclass
class NCutRound:
    """One NCut round on a (rows, cols) token grid.

    Attributes:
        unoccupied: tokens no earlier mask took (bool grid).
        eigenvalues: the two smallest eigenvalues of ``(D - A) x = lambda D x``.
        eigenvector: the Fiedler vector on the unoccupied tokens (0 elsewhere), with
            ``x^T D x = 1`` and its entry of largest magnitude positive.
        bipartition: the side of the cut the round keeps (after the release's reversal).
        seed: the flat index of the token the mask grows from.
        mask: the 4-connected component of ``bipartition`` holding the seed.
    """

    unoccupied: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvector: torch.Tensor
    bipartition: torch.Tensor
    seed: int
    mask: torch.Tensor


@dataclass
class CRFRefinement:
    """The dense CRF on one NCut mask at ``imgsize``: its label map, that map with its
    holes filled, the IoU of the NCut mask and the filled map, and whether it is kept."""

    crf_map: np.ndarray
    filled: np.ndarray
    iou: float
    kept: bool


@dataclass
class PanopticCutResult:
    """Everything one image's panoptic cut computes.

    Attributes:
        image: (S, S, 3) uint8 RGB, the image squashed to ``imgsize``.
        dino_input: (1, 3, S', S') DINO's normalised input (S' = S rounded to patches).
        keys: (C, n) the last block's keys, tokens row-major.
        grid: the token grid (rows, cols).
        rounds: one :class:`NCutRound` per round.
        refinements: one :class:`CRFRefinement` per round.
        masks: (M, H, W) uint8 at the original size (0 and the mask's peak value, 255 for
            a non-empty mask), as the release writes them; rejected masks are all 0.
    """

    image: np.ndarray
    dino_input: torch.Tensor
    keys: torch.Tensor
    grid: Tuple[int, int]
    rounds: List[NCutRound] = field(default_factory=list)
    refinements: List[CRFRefinement] = field(default_factory=list)
    masks: Optional[np.ndarray] = None


def normalised_cut_graph(features: torch.Tensor, tau: float, eps: float = 1e-5
                         ) -> torch.Tensor:
    """The release's NCut affinity of (C, n) token features: the cosine similarities
    (columns L2-normalised) thresholded at ``tau`` to 1 / 0, zeros replaced by ``eps`` (a
    complete graph): (n, n)."""
    normed = F.normalize(features, dim=0)
    affinity = ((normed.t() @ normed) > tau).to(features.dtype)
    affinity[affinity == 0] = eps
    return affinity


def fiedler_vector(affinity: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two smallest eigenvalues of ``(D - A) x = lambda D x`` (D = diag of the row
    sums) and the second eigenvector x with ``x^T D x = 1``, in float64.

    They are those of the normalised Laplacian ``I - D^-1/2 A D^-1/2`` (``x = D^-1/2 y``),
    i.e. the two largest of ``D^-1/2 A D^-1/2``, found by ARPACK's Lanczos iteration to
    machine precision (an exact solver; a dense ``eigh`` gives the same vector, many times
    slower) from a fixed start.  The sign makes the entry of largest magnitude (the first
    on ties) positive."""
    a = affinity.double().cpu().numpy()
    inv_sqrt = 1 / np.sqrt(a.sum(1))
    start = np.random.default_rng(0).standard_normal(len(a))
    values, vectors = eigsh(inv_sqrt[:, None] * a * inv_sqrt[None], k=2, which='LA',
                            v0=start, tol=0)
    x = torch.from_numpy(inv_sqrt * vectors[:, 0]).to(affinity.device)
    if x[x.abs().argmax()] < 0:
        x = -x
    return torch.from_numpy(1 - values[::-1].copy()).to(affinity.device), x


def _corners_in(bipartition: torch.Tensor) -> int:
    return int(bipartition[0, 0]) + int(bipartition[0, -1]) + int(bipartition[-1, 0]) \
        + int(bipartition[-1, -1])


def ncut_round(features: torch.Tensor, unoccupied: torch.Tensor, tau: float,
               eps: float = 1e-5) -> NCutRound:
    """One round of the release's ``panoptic_cut_forward`` on (C, n) features and the
    (rows, cols) grid of unoccupied tokens."""
    grid = tuple(unoccupied.shape)
    free = unoccupied.flatten()
    values, x = fiedler_vector(normalised_cut_graph(features[:, free], tau, eps))
    side = x > x.mean()
    bipartition = torch.zeros_like(free)
    bipartition[free] = side
    # Occupied tokens get the smallest magnitude, so the seed is an unoccupied token.
    peaks = torch.full(free.shape, float(x.abs().min()), dtype=x.dtype, device=x.device)
    peaks[free] = x
    seed = int(peaks.abs().argmax())
    if _corners_in(bipartition.view(grid)) >= 3 or not bipartition[seed]:
        # The other side of the cut: the release's "object-centric" reversal.
        peaks = -peaks
        bipartition = torch.zeros_like(free)
        bipartition[free] = ~side
    seed = int(peaks.argmax())
    components, _ = ndimage.label(bipartition.view(grid).cpu().numpy())
    mask = components == components[np.unravel_index(seed, grid)]
    eigenvector = torch.zeros(free.shape, dtype=x.dtype, device=x.device)
    eigenvector[free] = x
    return NCutRound(unoccupied, values, eigenvector.view(grid), bipartition.view(grid), seed,
                     torch.from_numpy(mask).to(unoccupied.device))


def dense_crf(image: np.ndarray, mask: np.ndarray, settings: Dict[str, float] = CRF_SETTINGS
              ) -> np.ndarray:
    """The release's ``densecrf``: a 2-label dense CRF on an (H, W, 3) uint8 RGB image with
    the (H, W) 0/1 mask as soft evidence (softmax of the logits (1 - m, m) in float64);
    returns the (H, W) label map (1 = the mask's side)."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        raise ImportError('the panoptic cut needs pydensecrf: pip install pydensecrf2==1.1') \
            from None
    height, width = mask.shape
    fg = torch.from_numpy(mask.astype(np.float64))
    probs = torch.softmax(torch.stack([1 - fg, fg]), dim=0).numpy()
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=settings['POS_XY_STD'], compat=settings['POS_W'])
    crf.addPairwiseBilateral(sxy=settings['Bi_XY_STD'], srgb=settings['Bi_RGB_STD'],
                             rgbim=np.array(image, dtype=np.uint8, order='C'),  # writable
                             compat=settings['Bi_W'])
    q = np.array(crf.inference(int(settings['MAX_ITER']))).reshape(2, height, width)
    return q.argmax(0).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| as the release divides it (float32)."""
    return float(np.float32((a & b).sum()) / np.float32((a | b).sum()))


def to_original_size(mask: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """The release's ``densecrf_postprocess`` of a kept (or emptied) bool mask: 0 / 255,
    PIL's bicubic resize to (W, H), then values above half the peak set to the peak and
    the rest to the minimum."""
    resized = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        size_wh, Image.BICUBIC)).copy()
    upper, lower = resized.max(), resized.min()
    resized[resized > upper / 2.0] = upper
    resized[resized <= upper / 2.0] = lower
    return resized


@MASK_GENERATORS.register_module(name=['PanopticCut', 'panoptic_cut'])
class PanopticCut(MaskGenerator):
    """LaVG's stage 1 (see the module doc).

    Args:
        vfm_path: DINO ViT-B/8 ('dino_vitb8': downloaded once), a checkpoint file, or a
            loaded tower; None takes the model's ``vfm_path`` (:meth:`set_vfm`).
        imgsize: side of the square the image is squashed to (the release's 640).
        N: NCut rounds, i.e. masks per image (8; stops early when at most 5 tokens are
            left).
        tau: the affinity threshold on cosine similarities.
        vit_features: which of the last block's 'q', 'k', 'v' to cut ('k', as released).
        affinity_eps: the weight of the affinity's non-edges.
        iou_keep: a CRF-refined mask whose IoU with its NCut mask is below it is emptied.
        crf: the CRF constants (:data:`CRF_SETTINGS`, the release's names).
        precision: DINO's precision; None: 'fp64' on the CPU (exact to the release in
            float64), 'fp32' on a GPU (the release's).  The cut itself is float64.
    """

    file_format = 'lavg'
    uses_vfm = True

    def __init__(self, vfm_path: Union[str, Path, nn.Module, None] = None, imgsize: int = 640,
                 N: int = 8, tau: float = 0.3, vit_features: str = 'k',  # noqa: N803
                 affinity_eps: float = 1e-5, iou_keep: float = 0.5,
                 crf: Optional[Dict[str, float]] = None, precision: Optional[str] = None):
        if vit_features not in _FEATURES:
            raise ValueError(f"vit_features must be one of 'q', 'k', 'v', got {vit_features!r}")
        if imgsize < 8 or N < 1:
            raise ValueError(f'imgsize must be at least 8 and N at least 1, got {imgsize} and {N}')
        unknown = set(crf or {}) - set(CRF_SETTINGS)
        if unknown:
            raise ValueError(f'unknown CRF settings {sorted(unknown)}; known: '
                             f'{", ".join(CRF_SETTINGS)}')
        self.imgsize, self.N, self.tau = imgsize, N, tau
        self.vit_features = vit_features
        self.affinity_eps, self.iou_keep = affinity_eps, iou_keep
        self.crf = dict(CRF_SETTINGS, **(crf or {}))
        self.precision = precision
        self.vfm_path = vfm_path
        self._tower: Optional[nn.Module] = None

    def set_vfm(self, vfm_path: Union[str, Path, nn.Module, None]) -> None:
        if self.vfm_path is None:
            self.vfm_path = vfm_path

    def to(self, device: Union[str, torch.device]) -> PanopticCut:
        super().to(device)
        self._tower = None  # loaded again on the device, in its precision there
        return self

    @property
    def dtype(self) -> torch.dtype:
        from ..clip import precision_dtype
        default = 'fp64' if self.device.type == 'cpu' else 'fp32'
        return precision_dtype(self.precision or default)

    @property
    def tower(self) -> nn.Module:
        """The DINO tower, loaded on first use."""
        if self._tower is None:
            if self.vfm_path is None:
                raise ValueError("PanopticCut reads DINO: set its vfm_path (e.g. 'dino_vitb8' "
                                 'or a checkpoint file), or the model\'s')
            if isinstance(self.vfm_path, nn.Module):
                self._tower = self.vfm_path.to(device=self.device, dtype=self.dtype).eval()
            else:
                from ..vfm import load_vfm
                self._tower = load_vfm(self.vfm_path, device=self.device, dtype=self.dtype)
        return self._tower

    def squashed(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (S, S, 3), PIL's LANCZOS (aspect not kept)."""
        return np.asarray(Image.fromarray(image).resize((self.imgsize, self.imgsize),
                                                        Image.LANCZOS))

    def dino_input(self, square: np.ndarray) -> torch.Tensor:
        """The squashed image resized to whole patches (a no-op for a multiple of the patch,
        LANCZOS otherwise), to 0..1 and normalised with DINO's constants: (1, 3, S', S')."""
        patch = self.tower.patch_size
        side = [int(round(s / patch)) * patch for s in square.shape[1::-1]]
        if side != list(square.shape[1::-1]):
            square = np.asarray(Image.fromarray(square).resize(side, Image.LANCZOS))
        x = torch.from_numpy(square.copy()).to(self.device, self.dtype).permute(2, 0, 1) / 255
        mean = torch.tensor(self.tower.mean, dtype=self.dtype, device=self.device).view(3, 1, 1)
        std = torch.tensor(self.tower.std, dtype=self.dtype, device=self.device).view(3, 1, 1)
        return ((x - mean) / std)[None]

    @torch.no_grad()
    def features(self, dino_input: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(C, n) q, k or v of DINO's last block (heads side by side, CLS dropped; what the
        release hooks off its ``qkv``), and the token grid."""
        tower = self.tower
        x = tower.embed(dino_input)
        for block in tower.blocks[:-1]:
            x = block(x)
        last = tower.blocks[-1]
        chosen = last.attn.project_qkv(last.norm1(x))[_FEATURES[self.vit_features]]
        tokens = chosen.transpose(1, 2).flatten(2)[0, tower.num_prefix_tokens:]  # (n, C)
        return tokens.t(), tower.grid_size(*dino_input.shape[-2:])

    def cut(self, image: np.ndarray) -> PanopticCutResult:
        """Everything the panoptic cut computes on an (H, W, 3) uint8 RGB image."""
        square = self.squashed(image)
        dino_input = self.dino_input(square)
        keys, grid = self.features(dino_input)
        result = PanopticCutResult(square, dino_input, keys, grid)
        unoccupied = torch.ones(grid, dtype=torch.bool, device=keys.device)
        for _ in range(self.N):
            step = ncut_round(keys.double(), unoccupied, self.tau, self.affinity_eps)
            result.rounds.append(step)
            unoccupied = unoccupied & ~step.mask
            if unoccupied.sum() <= 5:
                break
        size_wh = (image.shape[1], image.shape[0])
        masks = []
        for step in result.rounds:
            full = F.interpolate(step.mask[None, None].float(), size=square.shape[:2],
                                 mode='nearest')[0, 0].bool().cpu().numpy()
            crf_map = dense_crf(square, full, self.crf)
            filled = ndimage.binary_fill_holes(crf_map)
            iou = _iou(full, filled)
            kept = iou >= self.iou_keep
            result.refinements.append(CRFRefinement(crf_map, filled, iou, kept))
            masks.append(to_original_size(filled & kept, size_wh))
        result.masks = np.stack(masks)
        return result

    def __call__(self, image: np.ndarray) -> RegionMasks:
        masks = torch.from_numpy(self.cut(image).masks)
        return RegionMasks.from_layers(masks != 0)
