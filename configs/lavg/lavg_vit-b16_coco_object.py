_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_object.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_coco_object.txt',
    # The release's file has "bed" among the background synonyms (line 1) and as a
    # class (line 61); kept as released.
    allow_duplicate_names=True,
    logit_scale=50,
    prob_thd=0.1,
)
