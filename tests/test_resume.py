"""Resumable evaluation (docs/evaluate.md): runs SIGKILLed part-way resume from the work
dir's per-image record to the uninterrupted run's metrics, on any number of processes;
another setup is refused; damaged record lines are dropped; the weights are checked before
the Runner and recorded; summaries find their runs, mark partial ones and never shrink."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
import torch

from sfp.clip import CheckpointError
from sfp.evaluation import (
    SummaryRow,
    build_test_config,
    parse_cfg_options,
    results_table,
    run_test,
    weights_files,
    write_summary,
)
from sfp.record import KILL_ENV, EvaluationRecord, RecordMismatchError, RecordWriter

from .conftest import FIXTURES, REPO, TINY_CKPT, TINY_DINO

CAMVID = FIXTURES / 'data' / 'camvid'  # 6 images
CONFIG = REPO / 'configs' / 'sfp' / 'sfp_vit-b16_camvid.py'
OPTIONS = ['test_dataloader.num_workers=0', 'test_dataloader.batch_size=2']


def config(work_dir, data_root=CAMVID, clip_path=TINY_CKPT, options=(), config=CONFIG,
           **kwargs):
    return build_test_config(config, data_root=str(data_root), clip_path=str(clip_path),
                             work_dir=str(work_dir), cfg_options=dict(
                                 parse_cfg_options([*OPTIONS, *options]),
                                 experiment_name=uuid.uuid4().hex), **kwargs)


def metrics_of(work_dir):
    return json.loads((work_dir / 'metrics.json').read_text())['metrics']


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    """The work dir of an uninterrupted run (in this process)."""
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    run_test(config(work_dir))
    return work_dir


def cli(work_dir, *args, kill=None, launcher=()):
    """tools/test.py in a subprocess; ``kill``: where it SIGKILLs itself (sfp.record)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run(
        [sys.executable, *launcher, 'tools/test.py', str(CONFIG), '--data-root', str(CAMVID),
         '--clip-path', str(TINY_CKPT), '--work-dir', str(work_dir), *args,
         '--cfg-options', *OPTIONS], capture_output=True, text=True, cwd=REPO, env=env,
        timeout=600)


def lines_per_run(work_dir):
    """Images each run recorded, oldest run first."""
    return [len(p.read_bytes().splitlines())
            for p in sorted(EvaluationRecord(work_dir).folder.glob('images-*.jsonl'))]


def test_killed_twice_then_resumed_equals_the_uninterrupted_run(tmp_path, finished, capsys):
    maps = ('--out', str(tmp_path / 'maps'))  # a resumed run goes on writing to its --out
    torn = cli(tmp_path, *maps, kill='3:torn')  # killed halfway through writing its 3rd image
    assert torn.returncode == -9, torn.stderr[-2000:]
    assert EvaluationRecord(tmp_path).done() == 2
    synced = cli(tmp_path, *maps, kill='2')  # killed right after fsyncing its 2nd image
    assert synced.returncode == -9, synced.stderr[-2000:]
    assert ('1 damaged line(s) dropped (a write cut off by a kill?); 1 image(s) will be '
            'evaluated again') in synced.stderr
    assert '2/6 images restored from the record; evaluating the other 4' in synced.stdout
    final = cli(tmp_path, *maps)
    assert final.returncode == 0, final.stderr[-3000:]
    assert '(4 from the record, 2 evaluated now)' in final.stdout
    assert sorted(p.stem for p in (tmp_path / 'maps').iterdir()) == sorted(
        p.stem for p in (CAMVID / 'val').iterdir())  # whole files, none left half-written
    assert lines_per_run(tmp_path) == [2, 2, 2]  # no image evaluated twice
    assert metrics_of(tmp_path) == metrics_of(finished)  # to the last digit
    # The console: progress lines and the result; mmengine's dump is in the log file.
    assert final.stdout.splitlines()[-1].startswith('aAcc ') and final.stderr == ''
    assert len(final.stdout.splitlines()) <= 4 and 'Environment' not in final.stdout
    # A finished record: its metrics at once, no new run.
    runs = sorted(tmp_path.iterdir())
    assert run_test(config(tmp_path)) == metrics_of(finished)
    assert sorted(tmp_path.iterdir()) == runs
    assert 'already evaluated' in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_killed_resume_on_one(tmp_path, finished):
    killed = cli(tmp_path, '--launcher', 'pytorch', kill='1,2:torn', launcher=[
        '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
        str(free_port())])
    assert killed.returncode != 0
    restored = EvaluationRecord(tmp_path).done()
    assert restored >= 1
    resumed = cli(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'({restored} from the record, {6 - restored} evaluated now)' in resumed.stdout
    assert metrics_of(tmp_path) == metrics_of(finished)


def test_another_setup_is_refused_in_one_line(tmp_path, finished):
    other_clip = tmp_path / 'other_clip.pt'
    state = torch.load(TINY_CKPT, weights_only=True)
    state['logit_scale'] = state['logit_scale'] + 1
    torch.save(state, other_clip)
    other_root = tmp_path / 'camvid'
    shutil.copytree(CAMVID, other_root)
    for change, named in [
            (dict(options=['model.logit_scale=41']), 'config model.logit_scale: 40 there, 41 now'),
            (dict(clip_path=other_clip), f'weights model.clip_path: sha256 {sha256(TINY_CKPT)} '
                                         f'there, sha256 {sha256(other_clip)} now'),
            (dict(data_root=other_root), f'data root: {CAMVID.resolve()} there, '
                                         f'{other_root.resolve()} now')]:
        with pytest.raises(RecordMismatchError) as err:
            run_test(config(finished, **change))
        message = str(err.value)
        assert named in message and '\n' not in message, message
        assert 'pass --no-resume' in message and 'another --work-dir' in message


def test_no_resume_sets_the_record_aside_and_evaluates_again(tmp_path, finished, capsys):
    work_dir = tmp_path / 'wd'
    shutil.copytree(finished, work_dir)
    assert run_test(config(work_dir), resume=False) == metrics_of(finished)
    kept = [p.name for p in work_dir.iterdir() if p.name.startswith('record-')]
    assert len(kept) == 1 and f'kept as {work_dir / kept[0]}' in capsys.readouterr().out
    assert lines_per_run(work_dir) == [6]


def test_damaged_record_lines_are_dropped_with_a_warning(tmp_path, capsys):
    record = EvaluationRecord(tmp_path)
    record.folder.mkdir()
    writer = RecordWriter(record.folder, 'run', group=1)
    counts = [(torch.tensor([i, 0.1], dtype=torch.float32),) for i in range(3)]
    for i, count in enumerate(counts):
        writer.add(f'img{i}.png', [count])
    first, second, third = writer.path.read_bytes().splitlines(keepends=True)
    flipped = second.replace(b'"data":[1.0', b'"data":[7.0')  # a corrupted line
    writer.path.write_bytes(first + flipped + third[:len(third) // 2])  # and a torn tail
    entries = record.read(repair=True)
    assert list(entries) == ['img0.png']
    assert torch.equal(entries['img0.png'][0][0], counts[0][0])  # exact, float32
    assert ('2 damaged line(s) dropped (a write cut off by a kill?); 2 image(s) will be '
            'evaluated again') in capsys.readouterr().err
    assert writer.path.read_bytes() == first  # repaired: the warning is given once
    assert list(record.read()) == ['img0.png'] and capsys.readouterr().err == ''


def test_swapped_weights_are_refused_before_the_runner(tmp_path):
    for clip_path, vfm_path, named in [(TINY_DINO, TINY_DINO, 'is a DINO ViT'),
                                       (TINY_CKPT, TINY_CKPT, 'is a CLIP checkpoint')]:
        cfg = config(tmp_path / 'wd', clip_path=clip_path, vfm_path=str(vfm_path),
                     config=REPO / 'configs' / 'proxyclip' / 'proxyclip_vit-b16_ade20k.py',
                     data_root=FIXTURES / 'data' / 'ADEChallengeData2016')
        with pytest.raises(CheckpointError, match=named) as err:
            run_test(cfg)
        assert '\n' not in str(err.value)
        assert not (tmp_path / 'wd').exists()  # the Runner never started
    cfg = config(tmp_path / 'wd', vfm_path=str(FIXTURES / 'tiny_dino_vit16.pth'),
                 sam_path=str(TINY_DINO),
                 config=REPO / 'configs' / 'trident' / 'trident_vit-b16_ade20k.py',
                 data_root=FIXTURES / 'data' / 'ADEChallengeData2016')
    with pytest.raises(CheckpointError, match='is a DINO ViT .* not a SAM one') as err:
        run_test(cfg)
    assert '\n' not in str(err.value) and not (tmp_path / 'wd').exists()


def test_every_weights_file_is_recorded_and_shown(tmp_path, finished):
    record = json.loads((finished / 'metrics.json').read_text())
    assert record['weights'] == {'clip_path': dict(
        name=str(TINY_CKPT), file=str(TINY_CKPT.resolve()), sha256=sha256(TINY_CKPT))}
    # Any model argument naming weights, such as a method's sam_path, is recorded.
    sam = tmp_path / 'sam.pth'
    shutil.copy(FIXTURES / 'tiny_sam_vitb.pth', sam)
    files = weights_files(dict(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO),
                               sam_path=str(sam), name_path='configs/classnames/x.txt'))
    assert {k: v['sha256'] for k, v in files.items()} == {
        'clip_path': sha256(TINY_CKPT), 'vfm_path': sha256(TINY_DINO), 'sam_path': sha256(sam)}
    run = dict(metrics={'mIoU': 10.0}, weights=files, setting_weights=dict(
        clip_path='ViT-B/16', vfm_path='dino_vitb8', sam_path=str(sam)))
    markdown = results_table([SummaryRow('proxyclip', {'voc21': run})], ['voc21'])['markdown']
    assert (f'clip_path {TINY_CKPT} instead of ViT-B/16; vfm_path {TINY_DINO} instead of '
            f'dino_vitb8)') in markdown
    assert (f'Weights: clip_path {TINY_CKPT} (sha256 {sha256(TINY_CKPT)[:12]}); sam_path '
            f'{sam} (sha256 {sha256(sam)[:12]}); vfm_path {TINY_DINO} (sha256 '
            f'{sha256(TINY_DINO)[:12]}).') in markdown


def test_summary_finds_its_runs_marks_partial_ones_and_never_shrinks(tmp_path, capsys):
    for method, miou in (('sfp', 50.0), ('proxyclip', 60.0)):
        (tmp_path / f'{method}_vit-b16_voc21').mkdir()
        (tmp_path / f'{method}_vit-b16_voc21' / 'metrics.json').write_text(
            json.dumps({'metrics': {'mIoU': miou}}))
    killed = EvaluationRecord(tmp_path / 'sfp_vit-b16_ade20k')
    killed.create({}, {}, num_images=2000)
    writer = RecordWriter(killed.folder, 'run')
    writer.add('a.jpg', [None])
    writer.flush()
    markdown = write_summary(tmp_path, benchmarks=['voc21', 'ade20k'])
    assert '| sfp | 50.00 | partial 1/2000 | - |' in markdown
    assert '| proxyclip | 60.00 | - | - |' in markdown
    assert 'partial d/t: the run has evaluated d of its t images so far' in markdown
    write_summary(tmp_path, methods=['sfp'], benchmarks=['voc21', 'ade20k'])
    assert ('the earlier {0}.md also had proxyclip on voc21; it is kept as {0}.previous.md'
            .format(tmp_path / 'summary')) in capsys.readouterr().err
    assert (tmp_path / 'summary.previous.md').read_text() == markdown
