_base_ = [
    '../_base_/models/resclip_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/resclip/cls_cityscapes.txt',
    encoder=dict(temp_thd=0.1, attn_rcs_weights=(2.0, 0.2), attn_sfr_weights=(2.1, 0.6)),
)
