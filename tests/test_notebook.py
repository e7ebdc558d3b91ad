"""The analysis notebook executes headless from a clean state."""
import time

import nbformat
from nbclient import NotebookClient

from .conftest import REPO


def test_outlier_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.delenv('SFP_CLIP_PATH', raising=False)
    notebook = nbformat.read(REPO / 'notebooks' / 'outlier_vis.ipynb', as_version=4)
    start = time.time()
    NotebookClient(notebook, timeout=120, kernel_name='python3',
                   resources={'metadata': {'path': str(REPO / 'notebooks')}}).execute()
    assert time.time() - start < 120
    outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    text = ''.join(str(o.get('data', {}).get('text/markdown', '')) for o in outputs)
    assert 'the weights are random' in text  # no real checkpoint in the test cache
    assert sum('image/png' in o.get('data', {}) for o in outputs) == 6
