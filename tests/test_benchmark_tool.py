"""tools/benchmark.py runs every mode and reports its table and JSON (no timing asserted)."""
import importlib.util
import json
import subprocess
import sys

import torch

from .conftest import CLASSNAMES, REPO, TINY_CKPT


def test_benchmark_tool_reports_all_modes(tmp_path):
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--backbone', str(TINY_CKPT), '--sizes',
         '288x224', '--images', '2', '--image-batch', '2', '--device', 'cpu', '--json',
         str(out)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '| 288x224 | 2 | sfp |' in result.stdout
    rows = json.loads(out.read_text())['results']
    assert [r['mode'] for r in rows] == ['sfp', 'release', 'floor']
    for row in rows:
        assert row['crops_per_image'] == 2 and row['images_per_s'] > 0
        assert row['peak_memory_mb'] > 0
        assert abs(row['crops_per_s'] - 2 * row['images_per_s']) < 1e-6
    assert 'vs_floor' in rows[0] and 'vs_release' in rows[0]
    assert rows[2]['crop_batch'] == rows[0]['crop_batch'] and rows[1]['crop_batch'] == 1


def test_benchmark_tool_keeps_earlier_results(tmp_path):
    out = tmp_path / 'bench.json'
    out.write_text('earlier')
    result = subprocess.run([sys.executable, 'tools/benchmark.py', '--json', str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and '--overwrite' in result.stderr
    assert out.read_text() == 'earlier'


def test_release_equivalent_mode_predicts_what_the_segmentor_predicts():
    """The benchmark's release mode (crop by crop, dense canvas) against the batched,
    factored path: the same probabilities and labels, so the side-by-side compares equal
    work."""
    spec = importlib.util.spec_from_file_location('benchmark', REPO / 'tools' / 'benchmark.py')
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    from sfp import SFPSegmentor
    torch.manual_seed(0)
    images = torch.randn(2, 3, 250, 300, dtype=torch.float64)
    seg = SFPSegmentor(str(TINY_CKPT), str(CLASSNAMES / 'cls_voc21.txt'), device='cpu',
                       precision='fp64', logit_scale=50, prob_thd=0.15, area_thd=0.1)
    batched = seg.predict(images)
    release = benchmark.release_predictor(seg)(images, (250, 300))
    assert seg.crop_batch_size == 1
    for sample, (probs, labels) in zip(batched, release):
        assert torch.allclose(sample.seg_logits.data, probs, rtol=0, atol=1e-12)
        assert torch.equal(sample.pred_sem_seg.data, labels)
