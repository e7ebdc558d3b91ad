_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context59.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_context59.txt',
    encoder=dict(global_semantics_weight=0.25, mean_vector_weight=0.04,
                 cluster_threshold=0.09),
)
