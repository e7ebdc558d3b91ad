_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc20.py (singular values kept as they are).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_voc20.txt',
    encoder=dict(global_semantics_weight=0.4, mean_vector_weight=0.02, cluster_threshold=0.1,
                 rescale_singular_values=False),
)
