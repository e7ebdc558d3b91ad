_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's VOC20 names; on VOC20 the release multiplies the logits by the CLS logits.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_voc20.txt',
    encoder=dict(cls_logit_product=True),
)
