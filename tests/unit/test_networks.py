"""G's resize doubling computed as a transposed convolution is the same function as before."""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mangagan_app.ml.networks import Architecture, Generator, NearestDoublingConv
from mangagan_app.ml.sampling import noise, to_uint8

BEFORE = Path(__file__).resolve().parent.parent / "data" / "resize_g_before_polyphase"


def test_doubling_conv_equals_a_conv_of_the_nearest_resized_input_in_value_and_gradient():
    torch.manual_seed(0)
    layer = NearestDoublingConv(5, 3, 3, 1, 1, bias=True)
    x = torch.randn(2, 5, 7, 6, requires_grad=True)
    plain_x = x.detach().clone().requires_grad_(True)
    plain_w = layer.weight.detach().clone().requires_grad_(True)

    fast = layer(x)
    plain = torch.nn.functional.conv2d(
        torch.nn.functional.interpolate(plain_x, scale_factor=2, mode="nearest"), plain_w, layer.bias, padding=1
    )
    assert fast.shape == plain.shape == (2, 3, 14, 12)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)

    upstream = torch.randn_like(plain)
    (fast * upstream).sum().backward()
    (plain * upstream).sum().backward()
    torch.testing.assert_close(x.grad, plain_x.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.weight.grad, plain_w.grad, atol=1e-5, rtol=1e-5)


def test_a_resize_generator_saved_before_the_faster_doubling_loads_and_draws_the_same_pixels():
    # Made by commit 4b9c3bb's nn.Upsample + nn.Conv2d generator (32 px, width 4, FiLM, perturbed weights).
    arch = Architecture(resolution=32, width=4, g_conditioning="film", g_upsample="resize")
    generator = Generator(arch)
    generator.load_state_dict(load_file(BEFORE / "generator.safetensors"))
    cond = torch.zeros(4, arch.cond_dim)
    cond[torch.arange(4), torch.arange(4)] = 1.0
    with torch.no_grad():
        faces = to_uint8(generator.eval()(noise(4, 128, 9), cond))
    reference = np.load(BEFORE / "faces.npy")
    assert np.abs(faces.astype(int) - reference.astype(int)).max() <= 1
