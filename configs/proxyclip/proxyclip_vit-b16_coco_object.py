_base_ = [
    '../_base_/models/proxyclip_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_object.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_coco_object.txt',
    # The release's file has "bed" among the background synonyms (line 1) and as a
    # class (line 61); kept as released.
    allow_duplicate_names=True,
    prob_thd=0.25,
)
