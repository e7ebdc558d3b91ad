_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py (short side 560; each crop's own CLS as global vector,
# singular values kept as they are).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_cityscapes.txt',
    encoder=dict(global_semantics_weight=0.1, mean_vector_weight=0.03, cluster_threshold=0.14,
                 global_vector='crop', rescale_singular_values=False),
)
