_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_voc21.txt',
    logit_scale=65,
    prob_thd=0.1,
    area_thd=0.1,
    encoder=dict(type='LaVGEncoder', remove_falsefg=True),
)
