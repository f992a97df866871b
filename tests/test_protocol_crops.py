"""reproduce.protocol's CPU input path: crops cut with the mean subtracted in one pass must equal,
element for element, the reference order of operations (full float image minus mean, then
``oversample``), in both memory layouts; the helper-thread prefetch keeps sample order and passes
errors on."""
import numpy as np
import pytest
import torch

from reproduce import protocol


@pytest.mark.parametrize("size", [227, 224])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_crops_equal_reference(size, channels_last):
    rng = np.random.default_rng(size)
    imgs = rng.integers(0, 256, (4, 3, 256, 256), dtype=np.uint8)
    mean = (rng.random((3, 256, 256), dtype=np.float32) * 130).astype(np.float32)
    ref = protocol.oversample(torch.from_numpy(imgs).float() - torch.from_numpy(mean), size)
    got = protocol.oversample_minus_mean(imgs, mean, size, channels_last)
    assert got.shape == (40, 3, size, size)
    assert torch.equal(got, ref.reshape(40, 3, size, size))
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # crop 3 is the bottom-right corner, crop 8 its mirror (caffe.io.oversample order)
    np.testing.assert_array_equal(got[3].numpy(), imgs[0, :, -size:, -size:] - mean[:, -size:, -size:])
    np.testing.assert_array_equal(got[8].numpy(), got[3].numpy()[:, :, ::-1])


class Echo(torch.nn.Module):
    """A 'net' whose output is the mean of each crop: enough to check order and batching."""
    output_names = ["prob"]

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)).reshape(-1, 1).repeat(1, 2)


def test_prefetch_keeps_order_and_raises_errors():
    rng = np.random.default_rng(1)
    mean = np.zeros((3, 256, 256), np.float32)
    samples = [(f"k{i}", i % 2, rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)) for i in range(7)]
    p = protocol.evaluate(Echo(), iter(samples), mean, 227, "prob", batch=3)
    assert p.keys == [s[0] for s in samples] and p.labels.tolist() == [s[1] for s in samples]
    want = [np.mean([protocol.oversample(torch.from_numpy(s[2][None]).float(), 227)[0, k].mean().item()
                     for k in range(10)]) for s in samples]
    np.testing.assert_allclose(p.prob[:, 0], want, rtol=1e-5)
    bad = samples[:4] + [("bad", 0, np.zeros((3, 200, 200), np.uint8))]
    with pytest.raises(protocol.ProtocolError, match="'bad'"):
        protocol.evaluate(Echo(), iter(bad), mean, 227, "prob", batch=2)
