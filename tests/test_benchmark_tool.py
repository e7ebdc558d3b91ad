"""tools/benchmark.py: every method mode measures, the table and JSON report them (no timing
asserted), and the release-equivalent mode predicts what the batched segmentor predicts."""
import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from .conftest import CLASSNAMES, REPO, TINY_CKPT, TINY_DINO, TINY_SAM


@pytest.fixture(scope='module')
def benchmark():
    spec = importlib.util.spec_from_file_location('benchmark', REPO / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tool_reports_modes_and_pamr_cost(benchmark, tmp_path):
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--backbone', str(TINY_CKPT), '--sizes',
         '288x224', '--images', '2', '--image-batch', '2', '--device', 'cpu',
         '--methods', 'naclip', 'naclip+pamr', '--no-release', '--repeats', '2', '--json',
         str(out)],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '| 288x224 | naclip+pamr | slide 224/112 | 10 | 2 |' in result.stdout
    assert 'PAMR (10 steps) adds' in result.stdout
    report = json.loads(out.read_text())
    rows = report['results']
    assert [r['mode'] for r in rows] == ['floor', 'naclip', 'naclip+pamr']
    for row in rows:
        assert row['crops_per_image'] == 2 and row['images_per_s'] > 0
        assert row['peak_memory_mb'] > 0 and row['window'] == 'slide 224/112'
        assert abs(row['crops_per_s'] - 2 * row['images_per_s']) < 1e-6
    assert [r['pamr_steps'] for r in rows] == [0, 0, 10]
    assert all(r['repeats'] == 2 and r['spread'] >= 0 for r in rows)
    assert 'median of 2 interleaved passes after a warm-up' in report['setting']
    assert report['warnings'] == benchmark.timing_warnings(rows)
    assert 'vs_floor' in rows[1] and 'vs_floor' not in rows[0] and 'vs_release' not in rows[1]
    assert rows[0]['crop_batch'] == rows[1]['crop_batch']
    assert len(report['pamr']) == 1 and 'naclip+pamr vs naclip' in report['pamr'][0]


def test_a_vfm_method_has_a_floor_of_its_own(tmp_path):
    """ProxyCLIP's floor: CLIP and DINO on its crops (336, padded to 56); its row is
    measured against that floor, not SFP's."""
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--backbone', str(TINY_CKPT), '--vfm',
         str(TINY_DINO), '--sizes', '200x150', '--images', '1', '--image-batch', '1',
         '--device', 'cpu', '--methods', 'proxyclip', '--no-release', '--repeats', '1',
         '--json', str(out)],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {r['mode']: r for r in report['results']}
    assert list(rows) == ['floor', 'floor/proxyclip', 'proxyclip']
    assert f'VFM {TINY_DINO}' in report['setting']
    assert rows['floor/proxyclip']['window'] == rows['proxyclip']['window'] == 'slide 336/112'
    assert rows['floor/proxyclip']['crop_batch'] == rows['proxyclip']['crop_batch']
    ratio = rows['proxyclip']['images_per_s'] / rows['floor/proxyclip']['images_per_s']
    assert rows['proxyclip']['vs_floor'] == f'{ratio:.2f}'
    assert 'vs_floor' not in rows['floor/proxyclip']


def test_benchmark_tool_keeps_earlier_results(tmp_path):
    out = tmp_path / 'bench.json'
    out.write_text('earlier')
    result = subprocess.run([sys.executable, 'tools/benchmark.py', '--json', str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and '--overwrite' in result.stderr
    assert out.read_text() == 'earlier'


def test_benchmark_tool_rejects_unknown_method(benchmark, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(['--methods', 'sclp'])
    assert exit_info.value.code == 2 and "unknown method 'sclp'" in capsys.readouterr().err


def test_missing_vfm_is_one_line_or_leaves_the_default_list(benchmark, capsys, tmp_path):
    missing = tmp_path / 'dino.pth'
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(['--methods', 'proxyclip', '--vfm', str(missing)])
    assert exit_info.value.code == 2
    assert f'no VFM checkpoint at {missing}' in capsys.readouterr().err
    assert benchmark.vfm_missing(str(missing), ['sfp', 'naclip+pamr']) is None
    assert benchmark.vfm_missing(str(TINY_DINO), ['proxyclip']) is None


def test_mode_settings_follow_the_model_bases(benchmark):
    from sfp.apis import method_defaults
    assert benchmark.parse_mode('naclip@whole+pamr') == ('naclip', True, True)
    naclip = benchmark.method_settings('naclip')
    assert naclip['pamr_steps'] == 0 and naclip['slide_crop'] == 224
    assert naclip['encoder'] == method_defaults('naclip')['encoder']
    assert benchmark.method_settings('naclip+pamr')['pamr_steps'] == 10
    assert benchmark.method_settings('naclip@whole+pamr')['slide_crop'] == 0
    assert benchmark.method_settings('clearclip')['slide_crop'] == 448
    assert benchmark.method_settings('sclip+pamr')['pamr_steps'] == 10
    assert benchmark.method_settings('proxyclip')['vfm_path'] == 'dino_vitb8'
    assert benchmark.vfm_floor('proxyclip') == 'floor/proxyclip'
    assert benchmark.vfm_floor('naclip+pamr') is None
    assert 'proxyclip' in benchmark.METHODS
    assert benchmark.method_settings('cass')['vfm_path'] == 'dino_vitb8'
    assert benchmark.vfm_floor('cass') == 'floor/cass' and 'cass' in benchmark.METHODS
    assert benchmark.method_settings('trident')['sam_path'] == 'sam_vit_b'
    assert benchmark.vfm_floor('trident') == 'floor/trident' and 'trident' in benchmark.METHODS
    assert benchmark.vfm_floor('corrclip') == 'floor/corrclip' and 'corrclip' in \
        benchmark.METHODS
    regions = benchmark.GridRegions(side=48)(None, (100, 150)).label_map()
    assert regions.shape == (100, 150) and regions[0, :48].unique().tolist() == [1]
    # 3 x 4 blocks, ids 1..12; 5 and 10 are unsegmented.
    assert regions.unique().tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12]


# The model bases' windows on a 288x224 image: ClearCLIP's 448 crop (CLIP and MaskCLIP
# inherit it) covers it once, the others' 224 crop twice.
WINDOWS = dict(clip=('slide 448/224', 1), maskclip=('slide 448/224', 1),
               clearclip=('slide 448/224', 1), proxyclip=('slide 336/112', 1),
               corrclip=('slide 336/112', 1),
               **{'naclip@whole+pamr': ('whole', 1), 'floor/proxyclip': ('slide 336/112', 1),
                  'resclip@whole': ('whole', 1), 'trident': ('slide 336/224', 1)})


@pytest.mark.parametrize('mode', ['floor', 'release', 'sfp', 'clip', 'maskclip', 'clearclip',
                                  'sclip', 'naclip', 'naclip+pamr', 'naclip@whole+pamr',
                                  'scclip', 'cliptrase', 'proxyclip', 'floor/proxyclip',
                                  'resclip', 'resclip@whole', 'cass', 'floor/cass',
                                  'trident', 'corrclip'])
def test_every_mode_measures_on_the_tiny_model(benchmark, mode):
    cfg = dict(mode=mode, size=(288, 224), backbone=str(TINY_CKPT), vfm=str(TINY_DINO),
               sam=str(TINY_SAM), random=False, device='cpu', precision='fp32', images=1,
               image_batch=1, crop_batch_size=None)
    row = benchmark.measure(cfg)
    assert row['mode'] == mode and row['size'] == '288x224'
    assert (row['window'], row['crops_per_image']) == WINDOWS.get(mode, ('slide 224/112', 2))
    assert row['pamr_steps'] == (10 if mode.endswith('+pamr') else 0)
    for key in ('images_per_s', 'crops_per_s', 'peak_memory_mb'):
        assert math.isfinite(row[key]) and row[key] > 0


def test_release_equivalent_mode_predicts_what_the_segmentor_predicts(benchmark):
    """The benchmark's release mode (the encoder materialising every block's attention,
    crop by crop, dense canvas) against the batched, factored path: the same
    probabilities and labels, with SFP's settings honoured (here in-stream purification
    after block 6), so the side-by-side compares equal work."""
    from sfp import SFPSegmentor
    torch.manual_seed(0)
    images = torch.randn(2, 3, 250, 300, dtype=torch.float64)
    args = dict(clip_path=str(TINY_CKPT), name_path=str(CLASSNAMES / 'cls_voc21.txt'),
                device='cpu', precision='fp64', logit_scale=50, prob_thd=0.15, area_thd=0.1)
    stream = dict(encoder_cfg=dict(stream_mitigation_blocks=(6,)))
    seg = SFPSegmentor(**args, **stream)
    release_seg = SFPSegmentor(**dict(args, crop_batch_size=1), **stream)
    release_seg.encoder.materialise_all_attention = True
    assert release_seg.encoder.stream_mitigation_blocks == (6,)
    batched = seg.predict(images)
    release = benchmark.release_predictor(release_seg)(images, (250, 300))
    for sample, (probs, labels) in zip(batched, release):
        assert torch.allclose(sample.seg_logits.data, probs, rtol=0, atol=1e-12)
        assert torch.equal(sample.pred_sem_seg.data, labels)
    # In-stream purification changes the result, so the equality above covers it.
    plain = SFPSegmentor(**args).predict(images[:1])[0].seg_logits.data
    assert not torch.allclose(plain, batched[0].seg_logits.data, rtol=0, atol=1e-6)


def test_each_figure_is_the_median_of_interleaved_passes(benchmark, monkeypatch):
    """Every mode's worker is built and warmed up first; then each round times one pass of
    every mode, each round starting one mode later; a row's speed is its median pass."""
    calls = []
    passes = {'floor': [4.0, 1.0, 2.0], 'sclip': [2.0, 9.0, 4.0], 'naclip': [1.0, 1.0, 1.0]}

    class FakeWorker:
        def __init__(self, cfg):
            self.mode = cfg['mode']
            calls.append(('build', self.mode))

        def time_pass(self):
            calls.append(('time', self.mode))
            return passes[self.mode][sum(1 for c in calls if c == ('time', self.mode)) - 1]

        def stop(self):
            return dict(mode=self.mode, crops_per_image=2)

        def kill(self):
            calls.append(('kill', self.mode))

    monkeypatch.setattr(benchmark, 'Worker', FakeWorker)
    cfgs = [dict(mode=m, size=(8, 8), images=4) for m in passes]
    rows = benchmark.measure_interleaved(cfgs, repeats=3)
    assert calls[:3] == [('build', m) for m in passes]
    timed = [mode for what, mode in calls[3:] if what == 'time']
    assert timed == ['floor', 'sclip', 'naclip', 'sclip', 'naclip', 'floor',
                     'naclip', 'floor', 'sclip']
    assert rows['floor']['images_per_s'] == 4 / 2.0 and rows['sclip']['images_per_s'] == 1.0
    assert rows['sclip']['crops_per_s'] == 2.0 and rows['sclip']['spread'] == (9 - 2) / 4


def test_runs_too_short_or_too_noisy_to_time_are_flagged(benchmark):
    info = dict(mode='scclip', size='288x224', crops_per_image=2)
    steady = benchmark.timed_row(info, [2.0, 2.1, 2.05], images=2)
    short = benchmark.timed_row(info, [0.01, 0.01, 0.01], images=2)
    noisy = benchmark.timed_row(info, [2.0, 4.8, 2.1], images=2)
    assert benchmark.timing_warnings([steady]) == []
    [line] = benchmark.timing_warnings([short])
    assert 'scclip' in line and 'a pass takes 10 ms' in line and '--images' in line
    [line] = benchmark.timing_warnings([noisy])
    assert 'its 3 passes differ by 133%' in line


def test_the_default_rows_cover_every_method(benchmark):
    """A method of the registry without a row would be missing from the speed table."""
    from sfp.apis import available_methods
    assert {benchmark.parse_mode(mode)[0] for mode in benchmark.METHODS} == \
        set(available_methods())
