import pytest
import torch

from genlab import VAE, GenlabError, VAEConfig
from genlab.nets import ConvDecoder, ConvEncoder, resolve_net


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_conv_nets_map_images_to_codes_and_back(shape):
    enc, dec = ConvEncoder(shape, 10), ConvDecoder(5, shape)
    assert enc(torch.zeros(2, *shape)).shape == (2, 10)
    assert dec(torch.zeros(2, 5)).shape == (2, *shape)


def test_auto_picks_conv_for_images_and_mlp_otherwise():
    assert resolve_net("auto", (1, 28, 28)) == "conv"
    assert resolve_net("auto", (1, 8, 8)) == "mlp"
    assert resolve_net("auto", (2,)) == "mlp"
    assert resolve_net("mlp", (1, 28, 28)) == "mlp"


def test_conv_on_unsuitable_shapes_is_a_user_error():
    with pytest.raises(GenlabError, match="square"):
        VAE(VAEConfig(input_shape=(1, 28, 32), net="conv"))
    with pytest.raises(GenlabError, match="images"):
        VAE(VAEConfig(input_shape=(5,), net="conv"))
