_base_ = [
    '../_base_/models/lposs_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# LPOSS+ as released (configs/lposs_plus.yaml; the dataset's class list, synonyms after ';'):
# LPOSS, then the window-averaged scores propagated over the input image's pixels (each
# linked to its 13 x 13 neighbourhood by Lab colour distance, tau 0.01).
model = dict(name_path='{{ fileDirname }}/../classnames/lposs/cls_coco_object.txt',
             propagation=dict(pixel_refine=True))
# The release's test Resize(scale=(2048, 448)) on every benchmark, over the dataset
# base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
