_base_ = [
    '../_base_/models/lposs_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# LPOSS as released (configs/lposs.yaml; the dataset's class list, synonyms after ';').
model = dict(name_path='{{ fileDirname }}/../classnames/lposs/cls_context60.txt')
# The release's test Resize(scale=(2048, 448)) on every benchmark, over the dataset
# base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
