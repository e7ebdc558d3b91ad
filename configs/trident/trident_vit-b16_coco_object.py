_base_ = [
    '../_base_/models/trident_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_object.py. Its class files are ProxyCLIP's.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_coco_object.txt',
    prob_thd=0.25,
    allow_duplicate_names=True,  # the release's file names 'bed' twice, kept as released
    encoder=dict(coarse_thresh=0.25),
)
# Its test Resize(scale=(2048, 448)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
