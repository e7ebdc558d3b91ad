_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_ade20k.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_ade20k.txt',
)
# Its test Resize(scale=(2048, 336)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 336)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
