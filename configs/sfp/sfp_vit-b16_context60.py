_base_ = [
    '../_base_/models/sfp_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The released ViT-B/16 setting (docs/evaluate.md, "The eight benchmarks").
model = dict(
    name_path='{{ fileDirname }}/../classnames/cls_context60.txt',
    logit_scale=40,
    prob_thd=0.15,
)
