_base_ = [
    '../_base_/models/lposs_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# LPOSS as released (configs/lposs.yaml; the dataset's class list, synonyms after ';').
# 'bed' is both a background synonym and a class in the release's list: kept as released.
model = dict(name_path='{{ fileDirname }}/../classnames/lposs/cls_coco_object.txt',
             allow_duplicate_names=True)
# The release's test Resize(scale=(2048, 448)) on every benchmark, over the dataset
# base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
