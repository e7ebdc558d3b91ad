"""The benchmark table: the one place that names each benchmark and what belongs to it.

The demo presets, the data-layout checks, the evaluation summary and the launch scripts
(through ``tools/benchmarks.py``) all read it, so a benchmark is called the same
everywhere.  Adding a benchmark means one entry here plus its configs
(``configs/<method>/<method>_vit-b16_<name>.py``); ``tests/test_benchmarks.py`` checks
that every config agrees with its entry.

This module imports nothing heavy, so scripts can read it quickly.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO / 'configs'
CLASSNAMES_DIR = CONFIGS_DIR / 'classnames'
DEFAULT_BACKBONE = 'vit-b16'


@dataclass(frozen=True)
class Benchmark:
    """One benchmark and SFP's released ViT-B/16 setting on it.

    Attributes:
        name: short name used by configs, presets, scripts and tables ('voc21').
        title: what it is, for people.
        dataset_type: the mmseg dataset class of its configs.
        data_root: default data root, relative to the data folder (``data/`` or ``DATA_DIR``).
        layout: what the dataset expects under its data root, and where it comes from.
        short_side: images are resized to this short side (long side at most 2048).
        logit_scale, prob_thd, area_thd: SFP's released post-processing setting.
        in_paper: one of the eight benchmarks of the paper's table (else an example).
    """

    name: str
    title: str
    dataset_type: str
    data_root: str
    layout: str
    short_side: int = 336
    logit_scale: float = 40.0
    prob_thd: float = 0.0
    area_thd: Optional[float] = None
    in_paper: bool = True

    @property
    def class_file(self) -> Path:
        """SFP's class-name file (one class per line, synonyms after commas)."""
        return CLASSNAMES_DIR / f'cls_{self.name}.txt'

    def config(self, method: str = 'sfp', backbone: str = DEFAULT_BACKBONE) -> Path:
        """The config that evaluates ``method`` on this benchmark."""
        return CONFIGS_DIR / method / f'{config_stem(method, self.name, backbone)}.py'


def config_stem(method: str, benchmark: str, backbone: str = DEFAULT_BACKBONE) -> str:
    """Name of a config (and of its default work dir): ``<method>_<backbone>_<benchmark>``."""
    return f'{method}_{backbone}_{benchmark}'


_VOC = 'JPEGImages/*.jpg, SegmentationClass/*.png and ImageSets/Segmentation/val.txt ' \
       '(VOCdevkit/VOC2012 of the VOC 2012 tar)'
_CONTEXT = 'JPEGImages/*.jpg, SegmentationClassContext/*.png and ' \
           'ImageSets/SegmentationContext/val.txt (VOCdevkit/VOC2010, labels from ' \
           'tools/dataset_converters/pascal_context.py)'

_TABLE: Tuple[Benchmark, ...] = (
    Benchmark('voc21', 'PASCAL VOC 2012 val, 20 classes + background', 'PascalVOCDataset',
              'VOCdevkit/VOC2012', _VOC, logit_scale=50, prob_thd=0.15, area_thd=0.1),
    Benchmark('context60', 'PASCAL Context val, 59 classes + background',
              'PascalContext60Dataset', 'VOCdevkit/VOC2010', _CONTEXT, prob_thd=0.15),
    Benchmark('coco_object', 'COCO val2017, 80 object classes + background',
              'COCOObjectDataset', 'coco_object',
              'images/val2017/*.jpg and annotations/val2017/*_instanceTrainIds.png '
              '(tools/dataset_converters/coco_object.py)', logit_scale=55, prob_thd=0.35),
    Benchmark('voc20', 'PASCAL VOC 2012 val, 20 classes, background ignored',
              'PascalVOC20Dataset', 'VOCdevkit/VOC2012', _VOC),
    Benchmark('context59', 'PASCAL Context val, 59 classes, background ignored',
              'PascalContext59Dataset', 'VOCdevkit/VOC2010', _CONTEXT),
    Benchmark('coco_stuff164k', 'COCO-Stuff 164k val2017, 171 classes', 'COCOStuffDataset',
              'coco_stuff164k',
              'images/val2017/*.jpg and annotations/val2017/*_labelTrainIds.png '
              "(mmseg's tools/dataset_converters/coco_stuff164k.py)"),
    Benchmark('cityscapes', 'Cityscapes val, 19 classes', 'CityscapesDataset', 'cityscapes',
              'leftImg8bit/val/<city>/*_leftImg8bit.png and '
              'gtFine/val/<city>/*_gtFine_labelTrainIds.png '
              "(mmseg's tools/dataset_converters/cityscapes.py)", short_side=560),
    Benchmark('ade20k', 'ADE20K val, 150 classes', 'ADE20KDataset', 'ade/ADEChallengeData2016',
              'images/validation/*.jpg and annotations/validation/*.png '
              '(ADEChallengeData2016 as released)', short_side=384),
    Benchmark('camvid', 'CamVid val (SegNet version), 11 classes; a custom-dataset example',
              'CustomSegDataset', 'camvid', 'val/*.png and valannot/*.png', in_paper=False),
)
BENCHMARKS: Dict[str, Benchmark] = {b.name: b for b in _TABLE}
PAPER_BENCHMARKS: List[str] = [b.name for b in _TABLE if b.in_paper]

# Reported ViT-B/16 mIoU (%), one table per source: each method's own release or paper
# (REPORTED_MIOU, with REPORTED_SOURCES per row; ../shared/docs/BASELINES.md section 2) and
# the SFP paper's Table 1 (PAPER_TABLE1_MIOU), which re-ran some baselines under its common
# protocol.  REPORTED_TABLES names them for the summary (see sfp.protocols).
def _row(*values: Optional[float], order: Sequence[str] = ()) -> Dict[str, float]:
    """Reported numbers given in the order of PAPER_BENCHMARKS, or of ``order``, kept in
    the order of PAPER_BENCHMARKS (None: not reported)."""
    given = dict(zip(order or PAPER_BENCHMARKS, values))
    return {b: given[b] for b in PAPER_BENCHMARKS if given.get(b) is not None}


SFP_PAPER = ('SFP paper (Jin et al., ICCV 2025), the PDF the authors host '
             '(Kimsure/Kimsure.github.io@40aa492 images/files/iccv25-sfp.pdf)')
# The paper's column order: V21 PC60 Object V20 PC59 Stuff ADE City.
PAPER_COLUMNS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
                 'ade20k', 'cityscapes')
PAPER_TABLE1_MIOU: Dict[str, Dict[str, float]] = {
    'clip': _row(18.6, 9.9, 8.1, 49.4, 11.1, 5.7, 3.1, 6.5, order=PAPER_COLUMNS),
    'maskclip': _row(38.8, 23.6, 20.6, 74.9, 26.4, 16.4, 9.8, 12.6, order=PAPER_COLUMNS),
    'cliptrase': _row(50.9, 29.9, 43.6, 81.0, 33.8, 22.8, 16.4, 21.3, order=PAPER_COLUMNS),
    'clearclip': _row(57.0, 32.6, 33.0, 80.9, 35.9, 23.9, 16.7, 30.0, order=PAPER_COLUMNS),
    'sclip': _row(59.7, 31.7, 33.5, 81.5, 34.5, 22.7, 16.5, 32.3, order=PAPER_COLUMNS),
    'naclip': _row(58.9, 32.2, 33.2, 79.7, 35.2, 23.3, 17.4, 35.5, order=PAPER_COLUMNS),
    'lavg': _row(62.1, 31.6, 34.2, 82.5, 34.7, 23.2, 15.8, 26.2, order=PAPER_COLUMNS),
    'proxyclip': _row(61.3, 35.3, 37.5, 80.3, 39.1, 26.5, 20.2, 38.1, order=PAPER_COLUMNS),
    'sfp': _row(63.9, 37.2, 37.9, 84.5, 39.9, 26.4, 20.8, 41.1, order=PAPER_COLUMNS),
}
# Its Avg. column (the mean of the eight, rounded).
PAPER_TABLE1_AVERAGE: Dict[str, float] = {
    'clip': 14.1, 'maskclip': 27.9, 'cliptrase': 37.5, 'clearclip': 38.8, 'sclip': 39.1,
    'naclip': 39.4, 'lavg': 38.8, 'proxyclip': 42.3, 'sfp': 44.0}
_PAPER_TABLE1_NOTES = {
    'clearclip': 're-run with the official code under the paper\'s common protocol',
    'sclip': 're-run with the official code under the paper\'s common protocol',
    'naclip': 're-run with the official code under the paper\'s common protocol',
    'lavg': 'uses DINO besides CLIP',
    'proxyclip': 'uses DINO besides CLIP',
}
PAPER_TABLE1_SOURCES: Dict[str, str] = {
    m: f'{SFP_PAPER}, Table 1' + (f' ({_PAPER_TABLE1_NOTES[m]})' if m in _PAPER_TABLE1_NOTES
                                  else '')
    for m in PAPER_TABLE1_MIOU}

REPORTED_MIOU: Dict[str, Dict[str, float]] = {
    'clip': _row(None, None, None, 41.8, 9.2, 4.4, 5.5, 2.1),
    'maskclip': _row(None, None, None, 74.9, 26.4, 16.4, 12.6, 9.8),
    'clearclip': _row(None, None, None, 80.9, 35.9, 23.9, 30.0, 16.7),
    'sclip': _row(59.63, 31.74, 33.52, 81.54, 34.46, 22.77, 32.34, 16.45),
    'naclip': _row(64.07, 34.99, 36.19, 83.03, 38.35, 25.69, 38.27, 19.05),
    'scclip': _row(64.6, 36.8, 37.7, 84.3, 40.1, 26.6, 41.0, 20.1),
    'cliptrase': _row(50.88, 29.87, 43.56, 80.95, 33.83, 22.84, 21.3, 16.35),
    'proxyclip': _row(61.3, 35.3, 37.5, 80.3, 39.1, 26.5, 38.1, 20.2),
    'resclip': _row(61.1, 33.5, 35.0, 86.0, 36.8, 24.7, 35.9, 18.0),
    'cass': _row(65.8, 36.7, 37.8, 87.8, 40.2, 26.7, 39.4, 20.4),
    'trident': _row(67.1, 38.6, 41.1, 84.5, 42.2, 28.3, 42.9, 21.9),
    'corrclip': _row(74.8, 44.2, 43.7, 88.8, 48.8, 31.6, 49.4, 26.9),
    'lavg': PAPER_TABLE1_MIOU['lavg'],
    'lposs': _row(61.1, 34.6, 33.4, 78.8, 37.8, 25.9, 37.3, 21.8),
    'sfp': PAPER_TABLE1_MIOU['sfp'],
}
REPORTED_SOURCES: Dict[str, str] = {
    'clip': 'ClearCLIP README results image (its appendix Table 2, their implementation)',
    'maskclip': 'ClearCLIP README results image (its appendix Table 2)',
    'clearclip': 'ClearCLIP README results image (its appendix Table 2)',
    'sclip': 'SCLIP README at b56bd30, no post-processing',
    'naclip': 'NACLIP README at 0cac3a6, PAMR on (release configs)',
    'scclip': 'SC-CLIP paper (arXiv 2411.15869; IEEE TIP 34, 2025), Table 1, ViT-B/16, no '
              'post-processing; taken from a later paper quoting that table (average 43.9)',
    'cliptrase': 'CLIPtrase README at 2b7de61, its 224 px centre-crop row (= its paper); '
                 'Cityscapes, not in the release, from the SFP paper Table 1',
    'proxyclip': "SFP paper (ICCV 2025) Table 1's ProxyCLIP row (CLIP ViT-B/16 + DINO ViT-B/8), "
                 "attributed to the ProxyCLIP paper (arXiv 2408.04883) Table 1; the release "
                 'README gives no numbers (../shared/docs/VFM_METHODS.md)',
    'resclip': 'ResCLIP README result images at 0e085f7 (= its paper, arXiv 2411.15851, '
               'Tables 1-2), NACLIP + ResCLIP, no final post-processing',
    'cass': 'CASS paper (CVPR 2025) Table 1, CLIP ViT-B/16 + DINO ViT-B/8 = the '
            'release README\'s "Quantitative Results" image (cass/static/images/miou.png of '
            'MICV-yonsei/MICV-yonsei.github.io@c2aa7d9)',
    'trident': 'Trident paper (ICCV 2025, arXiv 2411.09219) main table, CLIP ViT-B/16 + DINO '
               'ViT-B/16 + SAM ViT-B with SAM refinement = the release README\'s results '
               'image (assets/data_result.png of YuHengsss/Trident@a93b346; '
               '../shared/docs/TRIDENT.md)',
    'corrclip': 'CorrCLIP README at 103bc18 (CorrCLIPv1/README.md, "Results"), MetaCLIP '
                'ViT-B/16 + DINO ViT-B/8, its pre-generated SAM2 masks (the SAM2-32 row; '
                'average 51.0 = the arXiv 2411.10086 v1 abstract\'s)',
    'lavg': 'LaVG README results table at 2db88e5 (CLIP ViT-B/16, DINO ViT-B/8 panoptic-cut '
            "masks) = the SFP paper (ICCV 2025) Table 1's LaVG row",
    'lposs': 'LPOSS+ (CLIP ViT-B/16 LAION-2B + DINO ViT-B/16) as a third-party leaderboard '
             '(wizwand.com) quotes the LPOSS paper (arXiv 2503.19777, CVPR 2025); the '
             "paper's table could not be opened here and the release README gives none "
             '(../shared/docs/LPOSS.md)',
    'sfp': PAPER_TABLE1_SOURCES['sfp'],
}
# The average each source states over the eight benchmarks.
STATED_AVERAGE: Dict[str, float] = {'sfp': PAPER_TABLE1_AVERAGE['sfp'], 'cass': 44.4,
                                    'trident': 45.8, 'corrclip': 51.0}


@dataclass(frozen=True)
class ReportedTable:
    """One source's mIoU per method and benchmark, for the summary.

    Attributes:
        label: how the summary names its rows ('sfp (reported)', 'sfp (paper)').
        miou: method -> benchmark -> mIoU (%).
        sources: method -> where its row comes from.
        stated_average: method -> the average the source states over the eight.
    """

    label: str
    miou: Dict[str, Dict[str, float]]
    sources: Dict[str, str]
    stated_average: Dict[str, float]


REPORTED_TABLES: Dict[str, ReportedTable] = {
    'release': ReportedTable('reported', REPORTED_MIOU, REPORTED_SOURCES, STATED_AVERAGE),
    'paper_table1': ReportedTable('paper', PAPER_TABLE1_MIOU, PAPER_TABLE1_SOURCES,
                                  PAPER_TABLE1_AVERAGE),
}


def benchmark_of_dataset(dataset_type: str) -> Optional[str]:
    """The benchmark a dataset class evaluates (None: none of the table's, or several)."""
    names = [b.name for b in _TABLE if b.dataset_type == dataset_type]
    return names[0] if len(names) == 1 else None


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f' (did you mean {lowered[close[0]]!r}?)' if close else ''


def get_benchmark(name: str) -> Benchmark:
    """The table entry of ``name``; an unknown name is a one-line error listing the known."""
    if name not in BENCHMARKS:
        raise ValueError(f'unknown benchmark {name!r}{did_you_mean(name, list(BENCHMARKS))}; '
                         f'known: {", ".join(BENCHMARKS)}')
    return BENCHMARKS[name]
