_base_ = [
    '../_base_/models/resclip_vit-b16.py',
    '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context59.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/resclip/cls_context59.txt',
    encoder=dict(temp_thd=0.25, attn_rcs_weights=(2.0, 0.4), attn_sfr_weights=(1.8, 0.7)),
)
