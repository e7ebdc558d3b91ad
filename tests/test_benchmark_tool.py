"""tools/benchmark.py runs every mode and reports its table and JSON (no timing asserted)."""
import json
import subprocess
import sys

from .conftest import REPO, TINY_CKPT


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
