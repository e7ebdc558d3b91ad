_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_object.py (its class file repeats names).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_coco_object.txt',
    allow_duplicate_names=True,
    prob_thd=0.1,
    encoder=dict(global_semantics_weight=0.25, mean_vector_weight=0.01,
                 cluster_threshold=0.1),
)
