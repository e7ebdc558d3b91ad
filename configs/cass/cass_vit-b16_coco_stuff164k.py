_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/coco_stuff164k.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_stuff164k.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_coco_stuff164k.txt',
    encoder=dict(global_semantics_weight=0.2, mean_vector_weight=0.02,
                 cluster_threshold=0.02),
)
