# A folder of images and label maps, described without code (CustomSegDataset). Copy it
# (or inherit, as configs/sfp/sfp_vit-b16_camvid.py does) and set: data_root, the class
# file (one class per line, synonyms after commas; also the model's vocabulary), folders
# and suffixes, reduce_zero_label (True when label 0 means "unlabelled") and ignore_index
# (the label excluded from the metric; set test_evaluator = dict(ignore_index=...) too).
_base_ = './loader.py'
test_dataloader = dict(
    dataset=dict(
        type='CustomSegDataset',
        data_root='data/my_dataset',
        classes_file=None,
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        ignore_index=255,
    ))
