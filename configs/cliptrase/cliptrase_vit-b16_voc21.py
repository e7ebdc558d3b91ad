_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's VOC21 names (its 33 background names on line 1, mmseg's class order).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_voc21.txt',
    # The release's background names repeat "bed" (line 1); kept as released.
    allow_duplicate_names=True,
    # The release numbers background after the objects: it loses ties in the vote.
    encoder=dict(background_class=0),
)
