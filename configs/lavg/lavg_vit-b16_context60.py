_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context60.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_context60.txt',
    logit_scale=50,
    prob_thd=0.1,
)
