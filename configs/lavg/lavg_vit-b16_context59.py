_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context59.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_context59.txt',
)
