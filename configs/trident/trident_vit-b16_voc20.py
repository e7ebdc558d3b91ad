_base_ = [
    '../_base_/models/trident_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc20.py, stride 112, cos_fac 0: SAM's attention kept where its values'
# similarity > 0. Its class files are ProxyCLIP's.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_voc20.txt',
    prob_thd=0.0,
    slide_stride=112,
    encoder=dict(coarse_thresh=0.2, cos_fac=0.0),
)
# Its test Resize(scale=(2048, 336)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 336)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
