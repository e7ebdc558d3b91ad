_base_ = [
    '../_base_/models/trident_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py: SAM encodes the image's left and right halves; cos_fac
# 3.0, negative thresholds become 0.6. Its class files are ProxyCLIP's.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_cityscapes.txt',
    prob_thd=0.0,
    encoder=dict(coarse_thresh=0.1, cos_fac=3.0, refine_neg_cos=False,
                 dataset_type='CityscapesDataset'),
)
# Its test Resize(scale=(2048, 688)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 688)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
