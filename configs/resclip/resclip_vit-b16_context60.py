_base_ = [
    '../_base_/models/resclip_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context60.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/resclip/cls_context60.txt',
    prob_thd=0.1,
    encoder=dict(temp_thd=0.3, attn_rcs_weights=(2.0, 0.3), attn_sfr_weights=(1.8, 0.7)),
)
