_base_ = [
    '../_base_/models/sfp_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The released ViT-B/16 setting (docs/evaluate.md, "The eight benchmarks").
model = dict(
    name_path='{{ fileDirname }}/../classnames/cls_voc21.txt',
    logit_scale=50,
    prob_thd=0.15,
    area_thd=0.1,
)
