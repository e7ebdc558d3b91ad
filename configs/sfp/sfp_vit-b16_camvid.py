# Example of the no-code custom dataset: CamVid (11-class SegNet version, 480x360 PNGs,
# labels 0..10 in the order of the class file, 11 = void).
_base_ = [
    '../_base_/models/sfp_vit-b16.py',
    '../_base_/datasets/custom.py',
    '../_base_/default_runtime.py',
]
classes = '{{ fileDirname }}/../classnames/cls_camvid.txt'
model = dict(name_path=classes, logit_scale=40, prob_thd=0.0)
test_dataloader = dict(
    dataset=dict(
        data_root='data/camvid',
        classes_file=classes,
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        img_suffix='.png',
        seg_map_suffix='.png',
        ignore_index=11))
test_evaluator = dict(ignore_index=11)
