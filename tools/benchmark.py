"""Speed and memory of every method, beside SFP the release's way (one crop at a time,
attention weights from every block) and the floor (a plain batched forward of the same
ViT on the same crops).

    python tools/benchmark.py [--sizes 448x336 512x384 1120x560] [--backbone ViT-B/16]
        [--vfm dino_vitb8] [--sam sam_vit_b] [--random] [--precision fp16] [--device cuda]
        [--images 128] [--image-batch 16] [--repeats 5]
        [--methods sfp clip naclip+pamr naclip@whole+pamr ...]
        [--no-release] [--json out.json [--overwrite]]

Each method runs batched with the settings of its model base
``configs/_base_/models/<method>_vit-b16.py`` (window, crop and stride, thresholds),
except PAMR, which is off unless the mode says ``+pamr`` (then with the base's steps, or
10): ``naclip`` and ``naclip+pamr`` differ by PAMR alone, so PAMR's cost has a line of its
own.  ``@whole`` encodes each image whole instead (``naclip@whole+pamr`` is NACLIP's
released VOC setting, ``resclip@whole`` ResCLIP's).  ResCLIP's first-pass PAMR belongs to
its encoder and runs in every ResCLIP row; the PAMR column counts the final one only.
The ``window`` column says what each row ran.

A method that reads class-agnostic masks (LaVG, CorrCLIP) gets fixed synthetic ones
(:class:`GridRegions`), as from mask files; their generation has a line of its own,
``masks/<method>`` (its base's generator, e.g. LaVG's panoptic cut on the VFM, per image).

A method that also reads a vision foundation model has a floor of its own,
``floor/<method>``: CLIP's plain batched forward plus the VFM's, on that method's crops
(its window, padding included), in its crop batches, and for a method that reads SAM
(Trident) SAM's image encoder once per image at its 1024 x 1024 input; its ``vs floor`` is
against that row.

--backbone is a CLIP name or checkpoint, --vfm the VFM's name or checkpoint, --sam SAM's;
with --random, published architectures with random weights (speed does not depend on the
weights).  When the VFM cannot be had, the default method list leaves its methods out
(with a note); asking for them is an error.  Each (size, mode) runs in its own
process so that its peak memory is its own: GPU memory allocated by PyTorch, or the
process's peak resident memory on the CPU.  The processes of one size are built and
warmed up one after another, then time --repeats passes over the images in interleaved
rounds (one pass per mode per round), so that a change in the machine's load falls on
every mode alike; each figure is the median pass, the ``spread`` column says how far the
passes lay apart, and a row too short or too noisy to time is flagged in a warning.
Prints a table and writes JSON atomically (never over an earlier file without
--overwrite).
"""
import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sfp.masks import MaskSource, RegionMasks  # noqa: E402

FLOOR, RELEASE, MASKS = 'floor', 'release', 'masks'
METHODS = ('sfp', 'clip', 'maskclip', 'clearclip', 'sclip', 'naclip', 'naclip+pamr',
           'naclip@whole+pamr', 'scclip', 'cliptrase', 'proxyclip', 'resclip', 'resclip@whole',
           'cass', 'trident', 'lavg', 'corrclip', 'lposs')
DEFAULT_PAMR_STEPS = 10
# A row whose median pass is shorter, or whose passes spread wider (relative to the
# median), is flagged as too short or too noisy to time.
MIN_PASS_SECONDS = 0.5
MAX_SPREAD = 0.2
REPLY = '@benchmark '  # marks the worker's protocol lines among anything else it prints
CLASS_FILE = REPO / 'configs' / 'classnames' / 'cls_voc21.txt'


def parse_mode(mode: str) -> Tuple[str, bool, bool]:
    """``method[@whole][+pamr]`` -> (method, whole image, PAMR); a bad one is a ValueError."""
    from sfp.apis import check_method

    rest, pamr = (mode[:-len('+pamr')], True) if mode.endswith('+pamr') else (mode, False)
    method, whole = (rest[:-len('@whole')], True) if rest.endswith('@whole') else (rest, False)
    return check_method(method), whole, pamr


def vfm_floor(mode: str) -> Optional[str]:
    """The floor mode of a method mode that reads a VFM, in its encoder or in its patch-level
    label propagation (``floor/<method>``), else None."""
    from sfp.apis import method_defaults
    from sfp.registry import ENCODERS

    method = parse_mode(mode)[0]
    settings = method_defaults(method)
    encoder = ENCODERS.get(settings['encoder']['type'])
    propagation = settings.get('propagation')
    propagates = propagation is not None and propagation.get('patch', True)
    return f'{FLOOR}/{method}' if encoder.uses_vfm or propagates else None


def mask_generation(mode: str) -> Optional[str]:
    """The mask-generation mode of a method mode that reads generated masks
    (``masks/<method>``), else None."""
    method = parse_mode(mode)[0]
    return f'{MASKS}/{method}' if isinstance(method_settings(mode).get('masks'), dict) \
        else None


def vfm_missing(vfm: str, modes: Sequence[str], sam: str = 'sam_vit_b') -> Optional[str]:
    """Why the VFM (or SAM) the modes need cannot be had (None: it can, or none needs
    one)."""
    from sfp.apis import method_sam
    from sfp.clip import CheckpointError
    from sfp.vfm import resolve_vfm_checkpoint

    needed = [vfm] if any(vfm_floor(mode) or mask_generation(mode) for mode in modes) else []
    needed += [sam] if any(method_sam(parse_mode(mode)[0]) for mode in modes) else []
    try:
        for name in needed:
            resolve_vfm_checkpoint(name)
    except CheckpointError as err:
        return str(err)
    return None


def method_settings(mode: str) -> dict:
    """The segmentor arguments of a method mode: its base config, PAMR and window as the
    mode says."""
    from sfp.apis import method_defaults

    method, whole, pamr = parse_mode(mode)
    settings = method_defaults(method)
    settings['pamr_steps'] = (settings.get('pamr_steps') or DEFAULT_PAMR_STEPS) if pamr else 0
    if whole:
        settings['slide_crop'] = 0
    return settings


class GridRegions(MaskSource):
    """A mask source of fixed synthetic regions for timing (any image, no file): blocks of
    ``side`` pixels, every fifth unsegmented (id 0), about as many regions as the
    release's SAM2 masks give a 336-pixel crop."""

    def __init__(self, side: int = 48):
        self.side = side

    def read(self, image_path, image=None, size=None):
        rows = torch.arange(size[0])[:, None] // self.side
        cols = torch.arange(size[1])[None, :] // self.side
        ids = rows * (size[1] // self.side + 1) + cols + 1
        return RegionMasks.from_label_map(torch.where(ids % 5 == 0, 0, ids)), 'a grid'


def build_segmentor(cfg: dict, **settings):
    """A segmentor on the benchmark's backbone, VOC's 21 classes and one template (and
    :class:`GridRegions` for a method that reads regions)."""
    from sfp import clip
    from sfp.models import SFPSegmentor
    from sfp.registry import ENCODERS

    backbone = clip.random_model(cfg['backbone']) if cfg['random'] else cfg['backbone']
    arguments = dict(device=cfg['device'], precision=cfg['precision'],
                     crop_batch_size=cfg['crop_batch_size'], templates=['a photo of a {}.'],
                     return_probs=False, text_cache=False)
    arguments.update(settings)
    if 'vfm_path' in arguments:  # the method reads a VFM: the benchmark's
        arguments['vfm_path'] = benchmark_vfm(cfg)
    if 'sam_path' in arguments:  # the method reads SAM: the benchmark's
        from sfp.vfm import random_sam
        sam = cfg.get('sam', 'sam_vit_b')
        arguments['sam_path'] = random_sam(sam) if cfg['random'] else sam
    encoder = arguments.get('encoder')
    if encoder and ENCODERS.get(encoder['type']).uses_masks:
        arguments['masks'] = GridRegions()
    return SFPSegmentor(backbone, name_path=str(CLASS_FILE), **arguments)


def benchmark_vfm(cfg: dict):
    from sfp.vfm import random_vfm
    return random_vfm(cfg['vfm']) if cfg['random'] else cfg['vfm']


def peak_memory_mb(device: str) -> float:
    """GPU memory allocated by PyTorch at its peak, or the process's peak resident memory."""
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_release_segmentor(cfg: dict):
    """SFP's segmentor run the release's way: one crop per forward, every walked block's
    attention weights materialised (``materialise_all_attention``); the walk itself is
    the encoder's own, so every setting (``stream_mitigation_blocks`` included) holds."""
    segmentor = build_segmentor(cfg, **dict(method_settings('sfp'), crop_batch_size=1))
    segmentor.encoder.materialise_all_attention = True
    return segmentor


def release_predictor(segmentor) -> Callable:
    """The segmentor's parts run the release's way: one crop per forward; each crop's
    logits upsampled to its window and summed into an input-size canvas, divided by the
    coverage counts, resized to the output size and post-processed there.  Build the
    segmentor with :func:`build_release_segmentor` for the release's attention weights too.
    Returns ``predict(images, size) -> [(probs, labels)]``."""
    import torch.nn.functional as F

    from sfp.models import postprocess_logits, sliding_windows

    def resize(x, size):
        return F.interpolate(x[None], size=size, mode='bilinear', align_corners=False)[0]

    def predict(images, size):
        results = []
        for img in images:
            total = img.new_zeros((segmentor.num_queries, *img.shape[-2:]),
                                  dtype=segmentor.compute_dtype)
            count = torch.zeros_like(total[:1])
            for y1, y2, x1, x2 in sliding_windows(*img.shape[-2:], segmentor.slide_crop,
                                                  segmentor.slide_stride):
                grid = segmentor.grid_logits(img[None, :, y1:y2, x1:x2])[0]
                total[:, y1:y2, x1:x2] += resize(grid, (y2 - y1, x2 - x1))
                count[:, y1:y2, x1:x2] += 1
            results.append(postprocess_logits(
                resize(total / count, size), segmentor.query_idx, segmentor.num_classes,
                segmentor.logit_scale, segmentor.prob_thd, segmentor.area_thd))
        return results

    return predict


def windows_of(segmentor, height: int, width: int) -> list:
    """The crops (y1, y2, x1, x2) the segmentor encodes for an image of this size."""
    from sfp.models import sliding_windows

    if segmentor.slide_crop == 0:
        return [(0, height, 0, width)]
    return sliding_windows(height, width, segmentor.slide_crop, segmentor.slide_stride)


def crops_of(segmentor, image: torch.Tensor) -> List[torch.Tensor]:
    """The crops the segmentor encodes for a (3, H, W) image, padded as it pads them."""
    from sfp.models import SlidingWindowLayout

    if segmentor.slide_crop == 0:
        return [image]
    stride = segmentor.encoder.logit_stride
    pad = segmentor.pad_crops
    layout = SlidingWindowLayout.build(*image.shape[-2:], segmentor.slide_crop,
                                       segmentor.slide_stride, stride,
                                       stride if pad is True else int(pad))
    return [layout.crop(image, r, c) for r, c, _ in layout.windows()]


def window_label(segmentor) -> str:
    if segmentor.slide_crop == 0:
        return 'whole'
    return f'slide {segmentor.slide_crop}/{segmentor.slide_stride}'


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class Measurement:
    """One (size, mode): the segmentor (or the floor's or the release's way of running
    it) built and warmed up, then timed pass by pass; each pass runs every image once."""

    def __init__(self, cfg: dict):
        from mmseg.structures import SegDataSample

        torch.manual_seed(0)
        self.cfg = cfg
        device, mode = cfg['device'], cfg['mode']
        width, height = cfg['size']
        floor_of = mode.split('/', 1)[1] if mode.startswith(f'{FLOOR}/') else None
        if mode == RELEASE:
            segmentor = build_release_segmentor(cfg)
        elif mode == FLOOR:  # the floor runs SFP's ViT on SFP's crops, in SFP's crop batches
            segmentor = build_segmentor(cfg, **method_settings('sfp'))
        else:  # a VFM method's floor: its CLIP and VFM on its crops, in its crop batches
            segmentor = build_segmentor(cfg, **method_settings(floor_of or mode))
        self.segmentor = segmentor
        self.images = torch.randn(cfg['images'], 3, height, width, device=device)
        self.windows = windows_of(segmentor, height, width)
        crop_size = tuple(crops_of(segmentor, self.images[0])[0].shape[-2:])
        crop_batch = self.crop_batch = segmentor.crops_per_batch(crop_size)
        self.per_batch = 1 if mode == RELEASE else cfg['image_batch']

        def run_batched(batch):
            samples = [SegDataSample(metainfo=dict(ori_shape=(height, width)))
                       for _ in range(len(batch))]
            segmentor.predict(batch, samples)

        def run_floor(batch):
            crops = torch.stack([crop for img in batch
                                 for crop in crops_of(segmentor, img)]).to(segmentor.dtype)
            for start in range(0, len(crops), crop_batch):
                segmentor.encoder.visual(crops[start:start + crop_batch])
                if floor_of:  # the method's VFM, or the one its label propagation reads
                    vfm = getattr(segmentor.encoder, 'vfm', None) or segmentor.propagation.vfm
                    vfm(crops[start:start + crop_batch])
            if getattr(segmentor.encoder, 'uses_sam', False):  # SAM once per image, at 1024
                encoder = segmentor.encoder.sam.image_encoder
                side = encoder.input_size
                for _ in batch:
                    encoder(crops.new_zeros(1, 3, side, side))

        if mode == RELEASE:
            release_predict = release_predictor(segmentor)

            def run(batch):
                release_predict(batch, (height, width))
        else:
            run = run_floor if mode == FLOOR or floor_of else run_batched
        self.run = run
        with torch.no_grad():
            run(self.images[:self.per_batch])  # warm-up (kernels, allocator)
        synchronize(device)
        if device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()

    def time_pass(self) -> float:
        """Seconds to run every image once."""
        device = self.cfg['device']
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, self.cfg['images'], self.per_batch):
                self.run(self.images[i:i + self.per_batch])
        synchronize(device)
        seconds = time.perf_counter() - start
        if device.startswith('cuda'):  # idle workers of the same size hold no cache
            torch.cuda.empty_cache()
        return seconds

    def info(self) -> dict:
        """What the row ran, and its peak memory since the warm-up."""
        segmentor, (width, height) = self.segmentor, self.cfg['size']
        return dict(mode=self.cfg['mode'], size=f'{width}x{height}',
                    window=window_label(segmentor),
                    pamr_steps=segmentor.pamr.num_iter if segmentor.pamr is not None else 0,
                    crops_per_image=len(self.windows), crop_batch=self.crop_batch,
                    peak_memory_mb=peak_memory_mb(self.cfg['device']))


class MaskMeasurement:
    """A method's mask generator alone (``masks/<method>``), as :class:`Measurement`: built
    and warmed up, then timed pass by pass over uint8 images."""

    def __init__(self, cfg: dict):
        from sfp.masks import build_mask_generator

        torch.manual_seed(0)
        self.cfg = cfg
        method = cfg['mode'].split('/', 1)[1]
        self.generator = build_mask_generator(method_settings(method)['masks'],
                                              benchmark_vfm(cfg))
        self.generator.to(cfg['device'])
        if cfg['precision'] and hasattr(self.generator, 'precision'):
            self.generator.precision = cfg['precision']
        width, height = cfg['size']
        rng = torch.Generator().manual_seed(0)
        self.images = [torch.randint(0, 256, (height, width, 3), generator=rng,
                                     dtype=torch.uint8).numpy() for _ in range(cfg['images'])]
        self.generator(self.images[0])  # warm-up (and the model's load)
        synchronize(cfg['device'])

    def time_pass(self) -> float:
        """Seconds to generate every image's masks once."""
        synchronize(self.cfg['device'])
        start = time.perf_counter()
        for image in self.images:
            self.generator(image)
        synchronize(self.cfg['device'])
        return time.perf_counter() - start

    def info(self) -> dict:
        width, height = self.cfg['size']
        return dict(mode=self.cfg['mode'], size=f'{width}x{height}', window='whole image',
                    pamr_steps=0, crops_per_image=1, crop_batch=1,
                    peak_memory_mb=peak_memory_mb(self.cfg['device']))


def build_measurement(cfg: dict):
    """The measurement of one (size, mode)."""
    return (MaskMeasurement if cfg['mode'].startswith(f'{MASKS}/') else Measurement)(cfg)


def timed_row(info: dict, seconds: Sequence[float], images: int) -> dict:
    """A table row from a measurement's passes: speed from the median pass, and the
    spread of the passes ((slowest - fastest) / median)."""
    median = statistics.median(seconds)
    images_per_s = images / median
    return dict(info, images_per_s=images_per_s,
                crops_per_s=images_per_s * info['crops_per_image'], repeats=len(seconds),
                median_pass_s=median, spread=(max(seconds) - min(seconds)) / median)


def timing_warnings(rows: Sequence[dict]) -> List[str]:
    """One line per row too short or too noisy to time."""
    lines = []
    for row in rows:
        short = row['median_pass_s'] < MIN_PASS_SECONDS
        noisy = row['repeats'] > 1 and row['spread'] > MAX_SPREAD
        if short or noisy:
            why = (f"a pass takes {row['median_pass_s'] * 1e3:.0f} ms" if short else
                   f"its {row['repeats']} passes differ by {row['spread']:.0%}")
            lines.append(f"warning: {row['size']} {row['mode']}: too short or too noisy to "
                         f"time ({why}); give more --images or --repeats, or a quieter "
                         f"machine")
    return lines


def measure(cfg: dict, repeats: int = 1) -> dict:
    """One (size, mode) measured in this process: warm-up, then ``repeats`` passes."""
    measurement = build_measurement(cfg)
    seconds = [measurement.time_pass() for _ in range(repeats)]
    return timed_row(measurement.info(), seconds, cfg['images'])


def serve(cfg: dict) -> None:
    """The worker process of one (size, mode): builds and warms up, says so, then answers
    'time' with one pass's seconds and 'stop' with the row's information."""
    measurement = build_measurement(cfg)
    reply(dict(ready=True))
    for command in sys.stdin:
        if command.strip() == 'time':
            reply(dict(seconds=measurement.time_pass()))
        elif command.strip() == 'stop':
            break
    reply(measurement.info())


def reply(message: dict) -> None:
    print(REPLY + json.dumps(message), flush=True)


class Worker:
    """A (size, mode) measurement in a process of its own, so that its peak memory is its
    own; it stays up across the rounds so that the modes' passes interleave."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.stderr = tempfile.TemporaryFile(mode='w+')  # noqa: SIM115  (closed by stop)
        self.process = subprocess.Popen(
            [sys.executable, __file__, '--worker', json.dumps(cfg)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=REPO)
        self.answer()  # built and warmed up

    def answer(self, command: Optional[str] = None) -> dict:
        if command:
            self.process.stdin.write(command + '\n')
            self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        self.process.wait()
        self.stderr.seek(0)
        raise RuntimeError(f'{self.cfg["mode"]} at {self.cfg["size"]} failed:\n'
                           f'{self.stderr.read()[-2000:]}')

    def time_pass(self) -> float:
        return self.answer('time')['seconds']

    def stop(self) -> dict:
        info = self.answer('stop')
        self.process.wait()
        self.stderr.close()
        return info

    def kill(self) -> None:
        """End the process if it still runs (after another worker failed)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def measure_interleaved(cfgs: Sequence[dict], repeats: int) -> Dict[str, dict]:
    """Rows of the modes of one size: one worker each, built and warmed up one after
    another, then ``repeats`` rounds of one pass per mode, each round starting one mode
    later, so that a change of the machine's load falls on every mode alike."""
    workers = {}
    try:
        for cfg in cfgs:
            workers[cfg['mode']] = Worker(cfg)
        seconds = {mode: [] for mode in workers}
        modes = list(workers)
        for round_index in range(repeats):
            shift = round_index % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                seconds[mode].append(workers[mode].time_pass())
            width, height = cfgs[0]['size']
            print(f'{width}x{height}: round {round_index + 1}/{repeats} of {len(modes)} modes '
                  f'timed', file=sys.stderr)
        return {mode: timed_row(workers[mode].stop(), seconds[mode], cfgs[0]['images'])
                for mode in modes}
    finally:
        for worker in workers.values():
            worker.kill()


def add_ratios(results: dict) -> None:
    """Each row's speed relative to the floor and to the release, of the same size and
    run, in images/s (in crops/s too where the crops are the floor's)."""
    release = results.get(RELEASE)
    for mode, row in results.items():
        if mode.startswith(MASKS):  # mask generation: a stage of its own
            continue
        floor = None if mode.startswith(FLOOR) else results.get(
            (mode != RELEASE and vfm_floor(mode)) or FLOOR)
        if floor:
            row['vs_floor'] = f"{row['images_per_s'] / floor['images_per_s']:.2f}"
        if release and mode != RELEASE:
            row['vs_release'] = f"{row['images_per_s'] / release['images_per_s']:.1f}x"


def pamr_costs(results: dict) -> List[str]:
    """One line per ``X+pamr`` mode measured beside ``X``: the time PAMR adds."""
    lines = []
    for mode, row in results.items():
        base = results.get(mode[:-len('+pamr')]) if mode.endswith('+pamr') else None
        if base:
            added = 1e3 / row['images_per_s'] - 1e3 / base['images_per_s']
            lines.append(f"{row['size']}: PAMR ({row['pamr_steps']} steps) adds "
                         f"{added:.0f} ms per image ({mode} vs {base['mode']}, "
                         f"{row['window']})")
    return lines


def table(rows: Sequence[dict]) -> str:
    head = ('| size | mode | window | PAMR | crops/img | crop batch | crops/s | images/s | '
            'peak MiB | vs floor | vs release | spread |\n'
            '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    lines = [head]
    for row in rows:
        lines.append(f"| {row['size']} | {row['mode']} | {row['window']} | "
                     f"{row['pamr_steps'] or '-'} | {row['crops_per_image']} | "
                     f"{row['crop_batch']} | {row['crops_per_s']:.1f} | "
                     f"{row['images_per_s']:.2f} | {row['peak_memory_mb']:.0f} | "
                     f"{row.get('vs_floor', '-')} | {row.get('vs_release', '-')} | "
                     f"{row['spread']:.0%} |")
    return '\n'.join(lines)


def parse_size(text: str) -> Tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from err
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return width, height


def parse_method_mode(text: str) -> str:
    try:
        parse_mode(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'{err} (a mode is method[@whole][+pamr])') from err
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(448, 336), (512, 384), (1120, 560)],
                        help='input sizes after resizing, WIDTHxHEIGHT')
    parser.add_argument('--backbone', default='ViT-B/16')
    parser.add_argument('--vfm', default='dino_vitb8',
                        help='vision foundation model of the methods that read one: a name '
                             '(with --random, its architecture) or a checkpoint')
    parser.add_argument('--sam', default='sam_vit_b',
                        help="SAM of the methods that read it (trident): a name (with "
                             "--random, its architecture) or a checkpoint")
    parser.add_argument('--random', action='store_true',
                        help='random weights of the --backbone architecture')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'])
    parser.add_argument('--images', type=int,
                        help='images per measurement (default: 128 on a GPU, 4 on the CPU)')
    parser.add_argument('--image-batch', type=int,
                        help='images per predict call (default: 16 on a GPU, as the '
                             'evaluation configs batch them; 4 on the CPU)')
    parser.add_argument('--crop-batch-size', type=int,
                        help='crops per forward (default: sized to the memory budget)')
    parser.add_argument('--methods', nargs='+', type=parse_method_mode, default=list(METHODS),
                        metavar='MODE', help='method modes, method[@whole][+pamr] (default: '
                                             f'{" ".join(METHODS)})')
    parser.add_argument('--repeats', type=int,
                        help='timed passes per mode, interleaved across the modes; each '
                             'figure is the median (default: 5 on a GPU, 3 on the CPU)')
    parser.add_argument('--no-release', action='store_true',
                        help='skip the release-equivalent SFP mode (the slowest)')
    parser.add_argument('--json', help='write the results here (default: print only)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --json')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        serve(json.loads(args.worker))
        return 0
    if args.json and Path(args.json).exists() and not args.overwrite:
        parser.error(f'{args.json} exists: pass --overwrite to replace it, or another --json')
    gpu = args.device.startswith('cuda')
    precision = args.precision or ('fp16' if gpu else 'fp32')
    count = args.images or (128 if gpu else 4)
    image_batch = args.image_batch or (16 if gpu else 4)
    repeats = args.repeats or (5 if gpu else 3)
    if repeats < 1:
        parser.error(f'--repeats must be at least 1, got {repeats}')
    methods = list(dict.fromkeys(args.methods))
    missing = None if args.random else vfm_missing(args.vfm, methods, args.sam)
    if missing and args.methods is not parser.get_default('methods'):
        parser.error(missing)
    generations = [g for g in dict.fromkeys(map(mask_generation, methods)) if g]
    if missing:  # the default list: measure the others
        print(f'note: leaving out {", ".join(m for m in methods if vfm_floor(m))} and '
              f'{", ".join(generations)}: {missing}', file=sys.stderr)
        methods = [m for m in methods if not vfm_floor(m)]
        generations = []
    floors = [f for f in dict.fromkeys(map(vfm_floor, methods)) if f]
    modes = [FLOOR] + ([] if args.no_release else [RELEASE]) + floors + generations + methods
    rows, notes = [], []
    for size in args.sizes:
        cfgs = [dict(mode=mode, size=size, backbone=args.backbone, vfm=args.vfm, sam=args.sam,
                     random=args.random, device=args.device, precision=precision, images=count,
                     image_batch=image_batch, crop_batch_size=args.crop_batch_size)
                for mode in modes]
        results = measure_interleaved(cfgs, repeats)
        add_ratios(results)
        rows.extend(results.values())
        notes.extend(pamr_costs(results))
    device_name = torch.cuda.get_device_name() if gpu else platform.processor() or 'cpu'
    vfm = f', VFM {args.vfm}' if floors else ''
    header = (f'backbone {args.backbone}{vfm}{" (random weights)" if args.random else ""}, '
              f'{precision}, {args.device} ({device_name}), {count} images per measurement, '
              f'{image_batch} images per predict call, median of {repeats} interleaved '
              f'passes after a warm-up')
    warnings = timing_warnings(rows)
    print(header)
    print(table(rows))
    print('\n'.join(notes))
    for line in warnings:
        print(line, file=sys.stderr)
    if args.json:
        from sfp.utils import atomic_write_text
        atomic_write_text(args.json, json.dumps(dict(setting=header, results=rows,
                                                     pamr=notes, warnings=warnings), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
