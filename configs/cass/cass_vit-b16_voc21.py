_base_ = [
    '../_base_/models/cass_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py (whole image, its own CLS as global vector).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cass/cls_voc21.txt',
    slide_crop=0,
    resize_via_input=True,  # whole image: grid -> input size -> original size
    prob_thd=0.1,
    encoder=dict(global_semantics_weight=0.1, mean_vector_weight=0.03, cluster_threshold=0.1,
                 global_vector='crop'),
)
