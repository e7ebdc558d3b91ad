_base_ = [
    '../_base_/models/resclip_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc20.py (whole image).
model = dict(
    name_path='{{ fileDirname }}/../classnames/resclip/cls_voc20.txt',
    slide_crop=0,
    encoder=dict(temp_thd=0.1, attn_rcs_weights=(2.0, 0.6), attn_sfr_weights=(2.1, 0.6)),
)
