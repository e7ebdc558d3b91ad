# A folder of images and label maps, described here without code (CustomSegDataset).
# Copy this file and set the fields below; the class file (one class per line, synonyms
# after commas) is also the model's vocabulary (see configs/sfp/sfp_vit-b16_camvid.py).
dataset_type = 'CustomSegDataset'
data_root = 'data/my_dataset'
classes_file = None  # path of the class-name file
img_dir, img_suffix = 'images', '.jpg'
seg_dir, seg_suffix = 'labels', '.png'
reduce_zero_label = False  # True when label 0 means "unlabelled" and classes start at 1
ignore_index = 255  # label value excluded; also set test_evaluator = dict(ignore_index=...)
short_side = 336

test_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='Resize', scale=(2048, short_side), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        classes_file=classes_file,
        data_prefix=dict(img_path=img_dir, seg_map_path=seg_dir),
        img_suffix=img_suffix,
        seg_map_suffix=seg_suffix,
        reduce_zero_label=reduce_zero_label,
        ignore_index=ignore_index,
        pipeline=test_pipeline))
