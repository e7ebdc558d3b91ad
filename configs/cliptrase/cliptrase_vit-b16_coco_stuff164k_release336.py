_base_ = './cliptrase_vit-b16_coco_stuff164k_release224.py'
# The release's own protocol at 336 px (its README's second row): a 336 x 336 centre square and
# the clusters' 336 px setting.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ResizeCenterCrop', size=336),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
model = dict(encoder=dict(dbscan_eps=1.1, dbscan_min_samples=7))
