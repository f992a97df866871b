"""Unit tests of the upstream score_models.py protocol (reproduce.protocol) and of the raw-Adience
preprocessing (reproduce.sources)."""
import numpy as np
import pytest
import torch

from reproduce import protocol, sources
from reproduce.protocol import (accuracy, aggregate, confusion_matrix, crop_offsets, oversample,
                                one_off_accuracy)


# ---------------------------------------------------------------------------- crops
@pytest.mark.parametrize("size,corner,centre", [(227, 29, 14), (224, 32, 16)])
def test_oversample_offsets_match_caffe_io_with_truncated_centre(size, corner, centre):
    assert crop_offsets(256, 256, size) == [(0, 0), (0, corner), (corner, 0), (corner, corner), (centre, centre)]
    # caffe.io.oversample: centre = int(128 - S/2) (truncation), the same as the Data layer's (256-S)//2
    assert protocol.centre_crop_offset(256, size) == centre == int(128 - size / 2.0)
    # upstream's single "centre" crop is the bottom-right corner (quirk Q-E1)
    assert protocol.single_crop_offset(256, size) == corner


def test_oversample_order_corners_centre_then_mirrors():
    img = np.arange(2 * 3 * 256 * 256, dtype=np.float32).reshape(2, 3, 256, 256)
    crops = oversample(img, 227).numpy()
    assert crops.shape == (2, 10, 3, 227, 227)
    for n in range(2):
        for i, (r, c) in enumerate(crop_offsets(256, 256, 227)):
            np.testing.assert_array_equal(crops[n, i], img[n, :, r:r + 227, c:c + 227])
            # mirrors: the same five crops flipped left-right, in the same order
            np.testing.assert_array_equal(crops[n, 5 + i], img[n, :, r:r + 227, c:c + 227][:, :, ::-1])


def test_oversample_reference_caffe_io_algorithm():
    """Re-derive caffe.io.oversample's crop boxes (H x W x C images) and compare."""
    size = 224
    im = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    im_shape = np.array(im.shape)
    crop_dims = np.array([size, size])
    im_center = im_shape[:2] / 2.0
    crops_ix = np.empty((5, 4), dtype=int)
    k = 0
    for i in (0, im_shape[0] - crop_dims[0]):
        for j in (0, im_shape[1] - crop_dims[1]):
            crops_ix[k] = (i, j, i + crop_dims[0], j + crop_dims[1])
            k += 1
    crops_ix[4] = np.tile(im_center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    crops_ix = np.tile(crops_ix, (2, 1))
    ref = np.stack([im[c[0]:c[2], c[1]:c[3], :] for c in crops_ix])
    ref[5:] = ref[5:, :, ::-1, :]
    ours = oversample(im.transpose(2, 0, 1)[None], size)[0].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------- metrics
def test_one_off_accuracy_counts_exact_and_adjacent_classes():
    label = [0, 1, 2, 3, 7, 4]
    pred = [0, 2, 0, 4, 6, 7]
    assert one_off_accuracy(pred, label) == pytest.approx(4 / 6)
    assert accuracy(pred, label) == pytest.approx(1 / 6)
    # gender: trivially 1
    assert one_off_accuracy([0, 1, 1], [1, 0, 1]) == 1.0


def test_confusion_matrix_is_indexed_prediction_label():
    cm = confusion_matrix([1, 1, 0], [0, 1, 0], 2)
    assert cm.tolist() == [[1, 0], [1, 1]]  # cm[pred, label]


def test_fold_mean_is_unweighted_with_population_std():
    mean, std = aggregate([0.5, 0.6, 0.7, 0.8, 0.4])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(np.sqrt(np.mean((np.array([0.5, 0.6, 0.7, 0.8, 0.4]) - 0.6) ** 2)))
    # not pooled: fold sizes do not matter
    folds = [{"acc": 1.0, "images": 1}, {"acc": 0.0, "images": 1000}]
    m, s = protocol.aggregate_folds([{**f, **{k: 0 for k in protocol.METRICS if k != "acc"}} for f in folds])
    assert m["acc"] == 0.5 and s["acc"] == 0.5
    assert protocol.upstream_string(0.35, 0.1224744871391589) == "0.35 +- 0.122"


# ---------------------------------------------------------------------------- evaluate
class ChannelNet(torch.nn.Module):
    """Softmax of a fixed linear map of pixel statistics (sensitive to position and mirroring)."""

    def __init__(self, n_classes=8, dict_output=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(6, n_classes, generator=g)
        self.dict_output = dict_output
        self.output_names = ["loss1/loss1", "loss3/loss3"] if dict_output else ["prob"]
        self.input_names = ["data"]
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        s = x.shape[-1]
        left = x[..., : s // 2].mean(dim=(2, 3))
        top = x[..., : s // 3, :].mean(dim=(2, 3))
        p = torch.softmax(torch.cat([left, top], 1) @ self.w / 20.0, dim=1)
        if self.dict_output:
            return {"loss1/loss1": p.flip(1), "loss3/loss3": p}
        return p


def _samples(n, seed=1):
    rng = np.random.default_rng(seed)
    return [(f"{i:08d}_img{i}.jpg", int(rng.integers(0, 8)), rng.integers(0, 256, (3, 256, 256), dtype=np.uint8))
            for i in range(n)]


def test_evaluate_subtracts_full_mean_before_cropping_and_averages_softmax():
    samples = _samples(3)
    mean = np.random.default_rng(2).random((3, 256, 256)).astype(np.float32) * 120
    net = ChannelNet()
    p = protocol.evaluate(net, samples, mean, 227, "prob", batch=2, keep_crops=True)
    assert net.calls == [20, 10]  # 10 crops per image, --batch images per forward
    for n, (_, _, img) in enumerate(samples):
        x = torch.from_numpy(img.astype(np.float32) - mean)[None]
        crops = oversample(x, 227)[0]
        ref = net(crops).numpy()
        np.testing.assert_allclose(p.crops[n], ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p.prob[n], ref.mean(0), rtol=1e-5, atol=1e-7)
        br = x[..., 29:256, 29:256]  # upstream single "centre" = bottom-right corner
        np.testing.assert_allclose(p.prob_single[n], net(br)[0].numpy(), rtol=1e-5, atol=1e-7)
        ce = x[..., 14:241, 14:241]
        np.testing.assert_allclose(p.prob_centre[n], net(ce)[0].numpy(), rtol=1e-5, atol=1e-7)
    assert p.keys == [s[0] for s in samples] and p.labels.tolist() == [s[1] for s in samples]
    np.testing.assert_array_equal(p.pred, p.prob.argmax(1))


def test_evaluate_is_batch_size_independent_and_picks_googlenet_main_head():
    samples = _samples(5)
    mean = np.full((3, 256, 256), 100.0, np.float32)
    a = protocol.evaluate(ChannelNet(dict_output=True), samples, mean, 224, "loss3/loss3", batch=5)
    b = protocol.evaluate(ChannelNet(dict_output=False), samples, mean, 224, "prob", batch=1)
    np.testing.assert_allclose(a.prob, b.prob, rtol=1e-5, atol=1e-7)


def test_evaluate_rejects_mean_of_other_size():
    with pytest.raises(protocol.ProtocolError, match="mean image"):
        protocol.evaluate(ChannelNet(), _samples(1), np.zeros((3, 227, 227), np.float32), 227, "prob")


def test_fold_metrics_single_and_centre_and_confmats():
    p = protocol.Predictions(keys=["a", "b", "c"], labels=np.array([0, 1, 3]),
                             prob=np.eye(8, dtype=np.float32)[[0, 2, 3]],
                             prob_single=np.eye(8, dtype=np.float32)[[1, 1, 7]],
                             prob_centre=np.eye(8, dtype=np.float32)[[0, 1, 3]])
    m = protocol.fold_metrics(p, 8)
    assert (m["acc"], m["one_off"]) == (pytest.approx(2 / 3), 1.0)
    assert (m["acc_single"], m["one_off_single"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert (m["acc_centre"], m["one_off_centre"]) == (1.0, 1.0)
    assert m["confmat"]["oversampled"][2][1] == 1 and m["images"] == 3


# ---------------------------------------------------------------------------- raw Adience
def test_pad_to_square_tall_image_replicates_first_and_last_column():
    img = np.arange(7 * 2 * 3, dtype=np.uint8).reshape(7, 2, 3)  # d = 5: 2 left, 3 right
    sq = sources.pad_to_square(img)
    assert sq.shape == (7, 7, 3)
    for j in range(2):
        np.testing.assert_array_equal(sq[:, j], img[:, 0])
    np.testing.assert_array_equal(sq[:, 2:4], img)
    for j in range(4, 7):
        np.testing.assert_array_equal(sq[:, j], img[:, -1])


def test_pad_to_square_wide_image_replicates_first_and_last_row():
    img = np.arange(2 * 5, dtype=np.uint8).reshape(2, 5)  # d = 3: 1 on top, 2 at the bottom
    sq = sources.pad_to_square(img)
    assert sq.shape == (5, 5)
    np.testing.assert_array_equal(sq[0], img[0])
    np.testing.assert_array_equal(sq[1:3], img)
    np.testing.assert_array_equal(sq[3], img[1])
    np.testing.assert_array_equal(sq[4], img[1])
    square = np.zeros((4, 4, 3), np.uint8)
    np.testing.assert_array_equal(sources.pad_to_square(square), square)


def test_adience_image_is_squared_then_resized_like_convert_imageset(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (90, 61, 3), dtype=np.uint8)  # BGR as OpenCV holds it
    (tmp_path / "faces" / "u1").mkdir(parents=True)
    (tmp_path / "aligned" / "u1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "faces" / "u1" / "coarse_tilt_aligned_face.1.x.png"), img)
    cv2.imwrite(str(tmp_path / "aligned" / "u1" / "landmark_aligned_face.1.x.png"), img)
    lst_r = tmp_path / "r.txt"
    lst_r.write_text("u1/coarse_tilt_aligned_face.1.x.png 3\n")
    lst_i = tmp_path / "i.txt"
    lst_i.write_text("u1/landmark_aligned_face.1.x.png 1\n")
    (key, label, arr), = sources.adience_samples(tmp_path, "r", lst_r)
    assert key == "00000000_u1/coarse_tilt_aligned_face.1.x.png" and label == 3
    padded = np.pad(img, [(0, 0), (14, 15), (0, 0)], mode="edge")
    ref = cv2.resize(padded, (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert arr.dtype == np.uint8 and arr.shape == (3, 256, 256)
    np.testing.assert_array_equal(arr, ref)
    (_, label_i, arr_i), = sources.adience_samples(tmp_path, "i", lst_i)  # [i]: no squaring
    np.testing.assert_array_equal(arr_i, cv2.resize(img, (256, 256), interpolation=cv2.INTER_LINEAR)
                                  .transpose(2, 0, 1))
    assert label_i == 1


def test_available_snapshots_parses_the_weights_name_pattern(tmp_path):
    d = tmp_path / "age_net_definitions" / "models_test_is_0"
    d.mkdir(parents=True)
    for it in (1000, 2000, 50000):
        (d / f"caffenet_train_iter_{it}.caffemodel").write_bytes(b"")
    (d / "caffenet_train_iter_3000.solverstate").write_bytes(b"")
    found = sources.available_snapshots(tmp_path, "age_net_definitions", 0)
    assert sorted(found) == [1000, 2000, 50000]


def test_predict_scores_through_the_protocols_10_crop_step(monkeypatch):
    """One 10-crop scoring loop: run.py --predict's Classifier delegates to protocol.crop_outputs,
    and crop_outputs is one forward pass over the oversampled crops."""
    import torch

    import converters
    from converters.formats import parse_net
    from reproduce import predict, protocol

    net = converters.load_caffe(parse_net("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
        layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }"""), phase="test")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (2, 3, 10, 10), dtype=np.uint8)
    x = torch.from_numpy(faces).float()
    out = protocol.crop_outputs(net, x, 8, "prob")
    assert out.shape == (2, protocol.N_CROPS, 3)
    manual = net(oversample(x, 8).reshape(20, 3, 8, 8)).reshape(2, 10, 3).detach().numpy()
    np.testing.assert_array_equal(out, manual)
    calls = []
    real = protocol.crop_outputs
    monkeypatch.setattr(protocol, "crop_outputs", lambda *a, **k: calls.append(a) or real(*a, **k))
    clf = predict.Classifier([predict.Net("n", net, None, 8, "prob", "d", "w", None)], ("a", "b", "c"), None,
                             (10, 10), channels_last=False)
    probs = clf.probabilities(faces)
    assert len(calls) == 1
    np.testing.assert_allclose(probs, manual.mean(1), rtol=1e-6)
