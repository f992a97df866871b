"""pycaffe's ``caffe.Classifier``: a TEST net with preprocessing and (optionally) 10-crop prediction."""
from __future__ import annotations

import numpy as np

from . import io
from .net import TEST, Net


class Classifier(Net):
    """``Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)``; ``predict(images, oversample=True)`` resizes every
    H x W x K image to ``image_dims``, takes the 10 oversampled crops (or the centre crop),
    preprocesses them and returns the output blob's rows (averaged over the 10 crops)."""

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, TEST, weights=pretrained_file)
        in_ = self.inputs[0]
        self.transformer = io.Transformer({in_: self.blobs[in_].data.shape})
        self.transformer.set_transpose(in_, (2, 0, 1))
        if mean is not None:
            self.transformer.set_mean(in_, mean)
        if input_scale is not None:
            self.transformer.set_input_scale(in_, input_scale)
        if raw_scale is not None:
            self.transformer.set_raw_scale(in_, raw_scale)
        if channel_swap is not None:
            self.transformer.set_channel_swap(in_, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        if not image_dims:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        inputs = list(inputs)
        batch = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1], inputs[0].shape[2]),
                         dtype=np.float32)
        for ix, im in enumerate(inputs):
            batch[ix] = io.resize_image(im, self.image_dims)
        if oversample:
            batch = io.oversample(batch, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            crop = np.tile(center, (1, 2))[0] + np.concatenate([-self.crop_dims / 2.0, self.crop_dims / 2.0])
            crop = crop.astype(int)
            batch = batch[:, crop[0]:crop[2], crop[1]:crop[3], :]
        in_ = self.inputs[0]
        caffe_in = np.zeros(np.array(batch.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, im in enumerate(batch):
            caffe_in[ix] = self.transformer.preprocess(in_, im)
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
