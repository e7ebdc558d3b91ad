_base_ = [
    '../_base_/models/resclip_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py (whole image).
model = dict(
    name_path='{{ fileDirname }}/../classnames/resclip/cls_voc21.txt',
    slide_crop=0,
    prob_thd=0.1,
    encoder=dict(temp_thd=0.5, attn_rcs_weights=(2.0, 0.3), attn_sfr_weights=(2.2, 0.7)),
)
