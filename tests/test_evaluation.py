"""tools/test.py end to end on real annotated images, distributed equivalence, the summary
table, and the errors a new user meets."""
import json
import os
import shutil
import subprocess
import sys
import uuid

import cv2
import pytest
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS

from sfp.benchmarks import REPORTED_MIOU
from sfp.datasets import converters
from sfp.evaluation import (
    build_test_config,
    parse_cfg_options,
    progress_interval,
    run_test,
    write_summary,
)

from .conftest import FIXTURES, REPO, TINY_CKPT

DATA = FIXTURES / 'data'
CONFIGS = REPO / 'configs' / 'sfp'


@pytest.fixture(scope='module')
def coco_object_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_object')
    converters.convert_coco_instances(DATA / 'coco_mini' / 'annotations' /
                                      'instances_val2017.json', root)
    shutil.copytree(DATA / 'coco_mini' / 'val2017', root / 'images' / 'val2017')
    return root


def evaluate(config, data_root, work_dir, **options):
    cfg = build_test_config(CONFIGS / config, data_root=str(data_root),
                            clip_path=str(TINY_CKPT), work_dir=str(work_dir),
                            cfg_options={'test_dataloader.num_workers': 0,
                                         'experiment_name': uuid.uuid4().hex, **options})
    return run_test(cfg)


@pytest.mark.parametrize('config,root,images', [
    ('sfp_vit-b16_coco_object.py', None, 8),
    ('sfp_vit-b16_ade20k.py', DATA / 'ADEChallengeData2016', 3),
    ('sfp_vit-b16_camvid.py', DATA / 'camvid', 6),
])
def test_end_to_end_metrics(tmp_path, coco_object_root, config, root, images):
    metrics = evaluate(config, root or coco_object_root, tmp_path)
    assert {'aAcc', 'mIoU', 'mAcc'} <= metrics.keys()
    record = json.loads((tmp_path / 'metrics.json').read_text())
    assert record['num_images'] == images and record['metrics']['mIoU'] == metrics['mIoU']
    runs = [p for p in tmp_path.iterdir() if (p / 'metrics.json').is_file()]
    assert len(runs) == 1  # plus one timestamped copy per run, never overwritten


@MODELS.register_module(force=True)
class GroundTruthOracle(BaseSegmentor):
    """Predicts each image's own annotation: a perfect model."""

    def __init__(self, **kwargs):
        super().__init__(data_preprocessor=MODELS.build(dict(type='SFPDataPreProcessor')))

    def predict(self, inputs, data_samples):
        for sample in data_samples:
            sample.set_data({'pred_sem_seg': PixelData(data=sample.gt_sem_seg.data.clone())})
        return data_samples

    def extract_feat(self, inputs):
        return inputs

    def encode_decode(self, inputs, batch_data_samples):
        return inputs

    def _forward(self, inputs, data_samples=None):
        return inputs

    def loss(self, inputs, data_samples):
        return {}


@pytest.mark.parametrize('config,root', [('sfp_vit-b16_coco_object.py', None),
                                         ('sfp_vit-b16_ade20k.py', DATA / 'ADEChallengeData2016'),
                                         ('sfp_vit-b16_camvid.py', DATA / 'camvid')])
def test_ground_truth_predictor_scores_100(tmp_path, coco_object_root, config, root):
    metrics = evaluate(config, root or coco_object_root, tmp_path,
                       model=dict(_delete_=True, type='GroundTruthOracle'))
    assert metrics['mIoU'] == 100.0 and metrics['aAcc'] == 100.0


def test_two_process_gloo_run_equals_single_process(tmp_path, coco_object_root):
    single = evaluate('sfp_vit-b16_coco_object.py', coco_object_root, tmp_path / 'single')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(29000 + os.getpid() % 1000), 'tools/test.py',
           str(CONFIGS / 'sfp_vit-b16_coco_object.py'), '--data-root', str(coco_object_root),
           '--clip-path', str(TINY_CKPT), '--work-dir', str(tmp_path / 'dist'),
           '--launcher', 'pytorch', '--cfg-options', 'test_dataloader.num_workers=0']
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / 'dist' / 'metrics.json').read_text())
    assert record['metrics'] == pytest.approx(single, abs=0) and record['num_images'] == 8


def run_cli(*args):
    return subprocess.run([sys.executable, 'tools/test.py', *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_wrong_data_root_names_path_and_layout(tmp_path):
    result = run_cli(CONFIGS / 'sfp_vit-b16_voc21.py', '--data-root', tmp_path / 'VOC2012')
    assert result.returncode == 2
    assert f'data root {tmp_path / "VOC2012"} does not exist' in result.stderr
    assert 'JPEGImages/*.jpg, SegmentationClass/*.png' in result.stderr
    wrong = run_cli(CONFIGS / 'sfp_vit-b16_ade20k.py', '--data-root', DATA / 'camvid')
    assert 'img_path: ' in wrong.stderr and 'images/validation/*.jpg' in wrong.stderr


def test_missing_annotation_and_unreadable_image(tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    shutil.copytree(DATA / 'ADEChallengeData2016', root)
    (root / 'annotations' / 'validation' / 'ADE_val_00000002.png').unlink()
    result = run_cli(CONFIGS / 'sfp_vit-b16_ade20k.py', '--data-root', root, '--clip-path',
                     TINY_CKPT)
    assert result.returncode == 2
    assert 'ADE_val_00000002.png' in result.stderr and 'do not exist' in result.stderr
    shutil.copy(DATA / 'ADEChallengeData2016' / 'annotations' / 'validation' /
                'ADE_val_00000002.png', root / 'annotations' / 'validation')
    (root / 'images' / 'validation' / 'ADE_val_00000003.jpg').write_bytes(b'not a jpeg')
    broken = run_cli(CONFIGS / 'sfp_vit-b16_ade20k.py', '--data-root', root, '--clip-path',
                     TINY_CKPT, '--work-dir', tmp_path / 'wd')
    assert broken.returncode == 2
    assert 'cannot decode image' in broken.stderr and 'ADE_val_00000003.jpg' in broken.stderr


def test_outputs_are_never_overwritten_silently(tmp_path):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'old.png').write_bytes(b'earlier result')
    result = run_cli(CONFIGS / 'sfp_vit-b16_camvid.py', '--data-root', DATA / 'camvid',
                     '--out', tmp_path / 'out')
    assert result.returncode == 2 and 'already holds files' in result.stderr
    assert (tmp_path / 'out' / 'old.png').read_bytes() == b'earlier result'


def test_out_writes_label_maps(tmp_path):
    evaluate('sfp_vit-b16_camvid.py', DATA / 'camvid', tmp_path / 'wd',
             test_evaluator=dict(output_dir=str(tmp_path / 'pred'), keep_results=True))
    maps = sorted((tmp_path / 'pred').glob('*.png'))
    assert len(maps) == 6
    assert cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED).shape == (360, 480)


def test_summary_table(tmp_path):
    runs = {('sfp', 'voc21'): 60.0, ('sfp', 'ade20k'): 22.5, ('sclip', 'voc21'): 58.0}
    for (method, bench), miou in runs.items():
        (tmp_path / f'{method}_vit-b16_{bench}').mkdir()
        (tmp_path / f'{method}_vit-b16_{bench}' / 'metrics.json').write_text(
            json.dumps({'metrics': {'mIoU': miou}}))
    markdown = write_summary(tmp_path, tmp_path / 'summary', ['sfp', 'sclip'],
                             ['voc21', 'ade20k'])
    sfp, sclip = REPORTED_MIOU['sfp'], REPORTED_MIOU['sclip']
    paper_mean = (sfp['voc21'] + sfp['ade20k']) / 2
    assert '| method | voc21 | ade20k | average |' in markdown
    assert '| sfp | 60.00 | 22.50 | 41.25 |' in markdown
    assert f"| sfp (reported) | {sfp['voc21']:.2f} | {sfp['ade20k']:.2f} | {paper_mean:.2f} |" \
        in markdown
    assert f"| sfp (difference) | {60 - sfp['voc21']:+.2f} | {22.5 - sfp['ade20k']:+.2f} | " \
           f"{41.25 - paper_mean:+.2f} |" in markdown
    assert '| sclip | 58.00 | - | - |' in markdown  # no ade20k run: no average
    assert f"| sclip (difference) | {58 - sclip['voc21']:+.2f} | - | - |" in markdown
    assert 'states an average' not in markdown  # only said for the full eight
    csv = (tmp_path / 'summary.csv').read_text().splitlines()
    assert csv[0] == 'method,benchmark,miou,reported_miou'
    assert csv[1] == f"sfp,voc21,60.0000,{sfp['voc21']}" and csv[4] == 'sclip,ade20k,,16.45'


def test_summary_of_the_eight_states_the_papers_average(tmp_path):
    (tmp_path / 'sfp_vit-b16_voc21').mkdir()
    (tmp_path / 'sfp_vit-b16_voc21' / 'metrics.json').write_text('{"metrics": {"mIoU": 1}}')
    markdown = write_summary(tmp_path, tmp_path / 'summary')
    paper = list(REPORTED_MIOU['sfp'].values())
    assert len(paper) == 8
    assert '| sfp (reported) | 63.90 | ' in markdown  # the paper's Table 1, not 62.9
    assert f'| {sum(paper) / 8:.2f} |' in markdown.splitlines()[3]
    assert ('Averages as the reported source states them: sfp 44.0 (the average column is '
            'the mean of the rounded numbers above).') in markdown


def test_misspelt_model_argument_is_one_line(tmp_path):
    result = run_cli(CONFIGS / 'sfp_vit-b16_camvid.py', '--data-root', DATA / 'camvid',
                     '--cfg-options', 'model.logit_scal=40')
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "model.logit_scal is not an argument of SFPSegmentor (did you mean 'logit_scale'?)" \
        in lines[0] and 'prob_thd' in lines[0]


def test_launcher_pytorch_outside_torchrun(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE')}
    result = subprocess.run([sys.executable, 'tools/test.py',
                             str(CONFIGS / 'sfp_vit-b16_camvid.py'), '--launcher', 'pytorch'],
                            capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 2
    assert 'torchrun' in result.stderr and 'distribute_test.sh' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pm_dict_option_from_the_readme(tmp_path):
    result = run_cli(CONFIGS / 'sfp_vit-b16_camvid.py', '--data-root', DATA / 'camvid',
                     '--clip-path', TINY_CKPT, '--work-dir', tmp_path, '--cfg-options',
                     "model.pm={'type':'SOM','num_outliers':'auto','cls_weight':1.5}",
                     'test_dataloader.num_workers=0')
    assert result.returncode == 0, result.stderr[-2000:]
    options = parse_cfg_options(["model.pm={'type':'LOF','n_neighbors':20}", 'a=[1,2]', 'b=x'])
    assert options == {'model.pm': {'type': 'LOF', 'n_neighbors': 20, '_delete_': True},
                       'a': [1, 2], 'b': 'x'}
    with pytest.raises(ValueError, match='not a Python dict literal'):
        parse_cfg_options(["model.pm={'type':"])


@pytest.mark.parametrize('images,batch,world,expected', [
    (101, 16, 1, 1), (1449, 16, 1, 9), (1449, 16, 8, 1), (5000, 1, 1, 500), (3, 16, 1, 1)])
def test_progress_every_tenth_of_a_run(images, batch, world, expected):
    interval = progress_interval(images, batch, world)
    batches = -(-images // (batch * world))
    assert interval == expected
    assert batches // interval >= 10 or interval == 1  # at least every ~10%


def test_loader_workers_capped_by_cores():
    cfg = build_test_config(CONFIGS / 'sfp_vit-b16_voc21.py',
                            cfg_options={'test_dataloader.num_workers': 64})
    assert cfg.test_dataloader.num_workers == len(os.sched_getaffinity(0))
