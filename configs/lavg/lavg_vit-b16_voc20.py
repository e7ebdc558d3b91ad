_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc20.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_voc20.txt',
)
