_base_ = [
    '../_base_/models/sfp_vit-b16.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
]
# The released ViT-B/16 setting (docs/evaluate.md, "The eight benchmarks").
model = dict(
    name_path='{{ fileDirname }}/../classnames/cls_ade20k.txt',
    logit_scale=40,
    prob_thd=0.0,
)
