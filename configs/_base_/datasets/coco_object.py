_base_ = './loader.py'
test_dataloader = dict(
    dataset=dict(
        type='COCOObjectDataset',
        data_root='data/coco_object',  # override with tools/test.py --data-root
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
    ))
