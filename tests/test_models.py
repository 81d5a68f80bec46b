"""Every model x objective keeps the contracts; every model is built exactly as the labs build it."""

import pytest
import torch
from torch import nn

from gankit.config import Config
from gankit.nets.losses import OBJECTIVES
from gankit.nets import MODELS, build_models, has_batchnorm, resnet
from shared import first_step_taken


def sig(m: nn.Module) -> str:
    """A compact signature of a layer, to compare with the labs' architectures."""
    b = "" if getattr(m, "bias", None) is not None else ",nobias"
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features},{m.out_features}{b})"
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        name = "ConvT" if isinstance(m, nn.ConvTranspose2d) else "Conv"
        op = f",op{m.output_padding[0]}" if isinstance(m, nn.ConvTranspose2d) and m.output_padding[0] else ""
        return f"{name}({m.in_channels},{m.out_channels},{m.kernel_size[0]},{m.stride[0]},{m.padding[0]}{op}{b})"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"{type(m).__name__}({m.num_features}" + (f",eps={m.eps:g})" if m.eps != 1e-5 else ")")
    if isinstance(m, nn.LeakyReLU):
        return f"LeakyReLU({m.negative_slope:g})"
    if isinstance(m, nn.MaxPool2d):
        return f"MaxPool({m.kernel_size})"
    if isinstance(m, nn.Upsample):
        return f"Upsample({m.scale_factor:g})"
    if isinstance(m, resnet.Block):
        return f"Block({m.expand.in_channels})"
    if isinstance(m, (resnet.Up, resnet.Down)):
        return f"{type(m).__name__}({m.conv.in_channels},{m.conv.out_channels})"
    return type(m).__name__


def resnet_layers(channels: list[int], first: int) -> tuple[list[str], list[str]]:
    """The resnet family's G and D at one block per resolution, from its channels per resolution
    (the first map's first) and the first map's side."""
    g = [f"Linear(100,{channels[0] * first * first})", "Unflatten", "LeakyReLU(0.2)"]
    for a, b in zip(channels, channels[1:]):  # (no blocks at the image's own resolution)
        g += [f"Block({a})", f"Up({a},{b})"]
    g += ["LeakyReLU(0.2)", f"Conv({channels[-1]},1,1,1,0)", "Tanh"]
    down = channels[::-1]
    d = [f"Conv(1,{down[0]},1,1,0)", "LeakyReLU(0.2)"]
    for a, b in zip(down, down[1:]):
        d += [f"Down({a},{b})", f"Block({b})"]
    d += ["LeakyReLU(0.2)", "Flatten", f"Linear({down[-1] * first * first},{down[-1]})", "LeakyReLU(0.2)",
          f"Linear({down[-1]},1)"]
    return g, d


EXPECTED = {
    "mlp": (
        ["Linear(100,256)", "LeakyReLU(0.2)", "BatchNorm1d(256,eps=0.8)", "Linear(256,512)", "LeakyReLU(0.2)",
         "BatchNorm1d(512,eps=0.8)", "Linear(512,784)", "Tanh"],
        ["Flatten", "Linear(784,512)", "LeakyReLU(0.2)", "Linear(512,256)", "LeakyReLU(0.2)", "Linear(256,1)"]),
    "mlp-lab6": (
        ["Linear(100,256)", "ReLU", "Linear(256,256)", "ReLU", "Linear(256,784)", "Tanh"],
        ["Flatten", "Linear(784,256)", "LeakyReLU(0.1)", "Linear(256,256)", "LeakyReLU(0.1)", "Linear(256,1)"]),
    "dcgan": (
        ["ConvT(100,512,4,1,0,nobias)", "BatchNorm2d(512)", "ReLU", "ConvT(512,256,3,2,1,nobias)", "BatchNorm2d(256)",
         "ReLU", "ConvT(256,128,4,2,1,nobias)", "BatchNorm2d(128)", "ReLU", "ConvT(128,1,4,2,1,nobias)", "Tanh"],
        ["Conv(1,64,4,2,1,nobias)", "LeakyReLU(0.2)", "Conv(64,128,4,2,1,nobias)", "BatchNorm2d(128)",
         "LeakyReLU(0.2)", "Conv(128,256,3,2,1,nobias)", "BatchNorm2d(256)", "LeakyReLU(0.2)",
         "Conv(256,1,4,1,0,nobias)"]),
    "cnn-upsample": (
        ["Linear(100,6272)", "Unflatten", "BatchNorm2d(128)", "Upsample(2)", "Conv(128,128,3,1,1)",
         "BatchNorm2d(128,eps=0.8)", "LeakyReLU(0.2)", "Upsample(2)", "Conv(128,64,3,1,1)", "BatchNorm2d(64,eps=0.8)",
         "LeakyReLU(0.2)", "Conv(64,1,3,1,1)", "Tanh"],
        ["Conv(1,64,4,2,1)", "LeakyReLU(0.2)", "Conv(64,128,4,2,1)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
         "Conv(128,256,4,1,0)", "BatchNorm2d(256)", "LeakyReLU(0.2)", "Conv(256,1,4,1,0)"]),
    "dcgan-fc": (
        ["Linear(100,1024)", "BatchNorm1d(1024)", "ReLU", "Linear(1024,6272)", "BatchNorm1d(6272)", "ReLU",
         "Unflatten", "ConvT(128,64,4,2,1)", "BatchNorm2d(64)", "ReLU", "ConvT(64,1,4,2,1)", "Tanh"],
        ["Conv(1,32,5,1,0)", "LeakyReLU(0.1)", "MaxPool(2)", "Conv(32,64,5,1,0)", "LeakyReLU(0.1)", "MaxPool(2)",
         "Flatten", "Linear(1024,1024)", "LeakyReLU(0.1)", "Linear(1024,1)"]),
    # Our users' face DCGAN: 5x5 kernels, stride 2, padding 2; the 4x4 map convolved straight to 1x1.
    "dcgan32": (
        ["ConvT(100,256,4,1,0,nobias)", "BatchNorm2d(256)", "ReLU", "ConvT(256,128,5,2,2,op1,nobias)",
         "BatchNorm2d(128)", "ReLU", "ConvT(128,64,5,2,2,op1,nobias)", "BatchNorm2d(64)", "ReLU",
         "ConvT(64,1,5,2,2,op1,nobias)", "Tanh"],
        ["Conv(1,64,5,2,2,nobias)", "LeakyReLU(0.2)", "Conv(64,128,5,2,2,nobias)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
         "Conv(128,256,5,2,2,nobias)", "BatchNorm2d(256)", "LeakyReLU(0.2)", "Conv(256,1,4,1,0,nobias)"]),
    "dcgan64": (
        ["ConvT(100,512,4,1,0,nobias)", "BatchNorm2d(512)", "ReLU", "ConvT(512,256,5,2,2,op1,nobias)",
         "BatchNorm2d(256)", "ReLU", "ConvT(256,128,5,2,2,op1,nobias)", "BatchNorm2d(128)", "ReLU",
         "ConvT(128,64,5,2,2,op1,nobias)", "BatchNorm2d(64)", "ReLU", "ConvT(64,1,5,2,2,op1,nobias)", "Tanh"],
        ["Conv(1,64,5,2,2,nobias)", "LeakyReLU(0.2)", "Conv(64,128,5,2,2,nobias)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
         "Conv(128,256,5,2,2,nobias)", "BatchNorm2d(256)", "LeakyReLU(0.2)", "Conv(256,512,5,2,2,nobias)",
         "BatchNorm2d(512)", "LeakyReLU(0.2)", "Conv(512,1,4,1,0,nobias)"]),
    "dcgan128": (
        ["ConvT(100,512,4,1,0,nobias)", "BatchNorm2d(512)", "ReLU", "ConvT(512,512,5,2,2,op1,nobias)",
         "BatchNorm2d(512)", "ReLU", "ConvT(512,256,5,2,2,op1,nobias)", "BatchNorm2d(256)", "ReLU",
         "ConvT(256,128,5,2,2,op1,nobias)", "BatchNorm2d(128)", "ReLU", "ConvT(128,64,5,2,2,op1,nobias)",
         "BatchNorm2d(64)", "ReLU", "ConvT(64,1,5,2,2,op1,nobias)", "Tanh"],
        ["Conv(1,64,5,2,2,nobias)", "LeakyReLU(0.2)", "Conv(64,128,5,2,2,nobias)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
         "Conv(128,256,5,2,2,nobias)", "BatchNorm2d(256)", "LeakyReLU(0.2)", "Conv(256,512,5,2,2,nobias)",
         "BatchNorm2d(512)", "LeakyReLU(0.2)", "Conv(512,512,5,2,2,nobias)", "BatchNorm2d(512)", "LeakyReLU(0.2)",
         "Conv(512,1,4,1,0,nobias)"]),
    # The DCGAN paper's 64x64 networks (PyTorch DCGAN tutorial).
    "dcgan64-paper": (
        ["ConvT(100,512,4,1,0,nobias)", "BatchNorm2d(512)", "ReLU", "ConvT(512,256,4,2,1,nobias)", "BatchNorm2d(256)",
         "ReLU", "ConvT(256,128,4,2,1,nobias)", "BatchNorm2d(128)", "ReLU", "ConvT(128,64,4,2,1,nobias)",
         "BatchNorm2d(64)", "ReLU", "ConvT(64,1,4,2,1,nobias)", "Tanh"],
        ["Conv(1,64,4,2,1,nobias)", "LeakyReLU(0.2)", "Conv(64,128,4,2,1,nobias)", "BatchNorm2d(128)", "LeakyReLU(0.2)",
         "Conv(128,256,4,2,1,nobias)", "BatchNorm2d(256)", "LeakyReLU(0.2)", "Conv(256,512,4,2,1,nobias)",
         "BatchNorm2d(512)", "LeakyReLU(0.2)", "Conv(512,1,4,1,0,nobias)"]),
    # The R3GAN-style residual family (width 64 at the image, doubling per halving, capped at 8x).
    "resnet": resnet_layers([256, 128, 64], 7),
    "resnet32": resnet_layers([512, 256, 128, 64], 4),
    "resnet64": resnet_layers([512, 512, 256, 128, 64], 4),
    "resnet128": resnet_layers([512, 512, 512, 256, 128, 64], 4),
}


def cfg_for(model, **kw):
    return Config(model=model, **kw).resolved()


FASTGAN = {"fastgan32", "fastgan64", "fastgan128"}  # not a Sequential: tests/test_fastgan.py checks its shapes


def test_every_model_is_specified():
    assert set(EXPECTED) | FASTGAN == set(MODELS)


@pytest.mark.parametrize("model", list(EXPECTED))
def test_architecture_matches_the_lab(model):
    G, D = build_models(cfg_for(model))
    assert [sig(m) for m in G.net] == EXPECTED[model][0]
    assert [sig(m) for m in D.net] == EXPECTED[model][1]
    # print() shows the layers: every lab layer appears in the printed text
    assert "Tanh()" in str(G) and "Sigmoid" not in str(D)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_shapes_ranges_and_gradients(model, objective):
    torch.manual_seed(0)
    cfg = cfg_for(model, objective=objective, d_norm="layer" if objective == "wgan-gp" and MODELS[model].d_norm else "batch",
                  g_width=16, d_width=16)
    G, D = build_models(cfg)
    G = first_step_taken(G)  # (the resnet family's to-image convolution starts at zero)
    obj = OBJECTIVES[objective]
    s = MODELS[model].size
    assert (G.z_dim, G.num_classes, G.img_shape) == (100, 0, (1, s, s))
    z = torch.randn(8, 100)
    x_fake = G(z)
    assert x_fake.shape == (8, 1, s, s)
    assert x_fake.min() >= -1 and x_fake.max() <= 1
    x_real = torch.rand(8, 1, s, s) * 2 - 1
    d_real, d_fake = D(x_real), D(x_fake.detach())
    assert d_real.shape == (8,) and torch.isfinite(d_real).all()
    obj.d_loss(d_real, d_fake).backward()
    # (fix-up: a residual branch whose last convolution starts at zero passes no gradient to the
    # convolutions before it until that one has moved: one step later)
    silent = (".expand.", ".mix.") if MODELS[model].own_init else ()
    assert_gradients(D, silent)
    D.zero_grad()
    obj.g_loss(D(x_fake), D(x_real).detach()).backward()  # (a relativistic G loss pairs fakes with reals)
    assert_gradients(G, silent)


def assert_gradients(module, silent: tuple[str, ...] = ()):
    """Every parameter gets a finite gradient and every weight tensor a nonzero one, except those
    whose names hold one of `silent`. (A bias may get exactly zero: under the WGAN loss D's last
    bias cancels between E[D(x)] and E[D(G(z))].)"""
    for name, p in module.named_parameters():
        if name.startswith("decoders."):  # (trained by D's reconstruction loss alone: tests/test_fastgan.py)
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name} got no gradient"
        if p.ndim >= 2 and not any(s in name for s in silent):
            assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("model", list(MODELS))
def test_eval_mode_sample_does_not_depend_on_batch(model):
    torch.manual_seed(0)
    G, _ = build_models(cfg_for(model, g_width=16))
    G.eval()
    z = torch.randn(64, 100)
    with torch.no_grad():
        alone, batch = G(z[:1]), G(z)
    torch.testing.assert_close(alone[0], batch[0], rtol=1e-5, atol=1e-5)


def test_z_dim_and_hidden_dim_are_configurable():
    G, D = build_models(cfg_for("mlp-lab6", z_dim=16, hidden_dim=64))
    assert G.z_dim == 16 and G(torch.randn(2, 16)).shape == (2, 1, 28, 28)
    assert sig(G.net[0]) == "Linear(16,64)"
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        G(torch.randn(2, 100))


def test_dcgan_widths_are_configurable_and_64_is_the_labs():
    """g_width/d_width scale the 28x28 DCGAN (the `default` preset runs it at 32); 64 is the
    labs' architecture, which the lab presets keep."""
    def channels(net):
        return [m.out_channels for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    G, D = build_models(Config(model="dcgan"))
    assert channels(G) == [512, 256, 128, 1] and channels(D) == [64, 128, 256, 1]
    G, D = build_models(Config(model="dcgan", g_width=32, d_width=32))
    assert channels(G) == [256, 128, 64, 1] and channels(D) == [32, 64, 128, 1]
    assert G(torch.randn(3, 100)).shape == (3, 1, 28, 28) and D(torch.randn(3, 1, 28, 28)).shape == (3,)


def test_normal02_init():
    torch.manual_seed(0)
    G, D = build_models(cfg_for("dcgan", init="normal02"))
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001
    bn = torch.cat([m.weight for m in D.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1) < 0.01 and 0.01 < bn.std().item() < 0.03
    torch.manual_seed(0)
    G2, _ = build_models(cfg_for("dcgan", init="default"))
    w2 = torch.cat([m.weight.flatten() for m in G2.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert w2.std().item() > 0.005 and abs(w2.std().item() - 0.02) > 0.001  # PyTorch's default differs


def test_d_norm_layer_removes_batchnorm():
    _, D = build_models(cfg_for("dcgan", d_norm="layer"))
    assert not has_batchnorm(D) and any(isinstance(m, nn.GroupNorm) for m in D.modules())
    _, D = build_models(cfg_for("dcgan", d_norm="none"))
    assert not has_batchnorm(D)


@pytest.mark.parametrize("model,conditional", [("dcgan", False), ("mlp", False), ("dcgan", True)])
def test_d_norm_spectral_bounds_every_weight_of_D(model, conditional):
    """d_norm=spectral: no BatchNorm in D, and after a few training-mode passes (one power
    iteration each) every weight D uses has largest singular value 1; G is untouched. Works on
    a model without norm layers (mlp) and on a projection D's class embedding."""
    torch.manual_seed(0)
    kw = dict(conditional=True, num_classes=10) if conditional else {}
    G, D = build_models(cfg_for(model, d_norm="spectral", **kw))
    assert not has_batchnorm(D) and has_batchnorm(G)
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in G.modules())
    assert any(isinstance(m, nn.Embedding) for m in layers) == conditional
    x = torch.randn(8, 1, 28, 28)
    args = (torch.randint(0, 10, (8,)),) if conditional else ()
    with torch.no_grad():
        for _ in range(30):
            D(x, *args)
    for m in layers:
        w = m.weight.flatten(1) if not isinstance(m, nn.Embedding) else m.weight
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02), m
    raw = layers[0].parametrizations.weight.original
    assert raw.std().item() == pytest.approx(0.02, abs=0.003)  # the N(0, 0.02) init reached the raw weight


@pytest.mark.parametrize("model", ["resnet", "resnet64"])
def test_resnet_blocks_start_as_the_identity_and_train_without_normalisation(model):
    """Fix-up: every residual branch's last convolution is zero at the start (a block is the identity),
    the others He-scaled by L^(-1/4); no normalisation layer anywhere, so R1/R2 apply; `blocks` sets
    the blocks per resolution; `init` leaves the family's own initialisation alone. G's to-image
    convolution starts at zero too: its first images are flat grey, the tanh unsaturated."""
    torch.manual_seed(0)
    G, D = build_models(cfg_for(model, blocks=2, g_width=16, d_width=16, init="normal02"))
    blocks = [m for m in [*G.modules(), *D.modules()] if isinstance(m, resnet.Block)]
    n = resnet.plan(MODELS[model].size)[1]
    assert len(blocks) == 2 * 2 * (n - 1)  # 2 per resolution below the image's, in G and in D
    x = torch.randn(2, blocks[0].expand.in_channels, 8, 8)
    assert all(float(b.project.weight.abs().max()) == 0 for b in blocks) and torch.equal(blocks[0](x), x)
    std = blocks[0].expand.weight.std().item()  # He for leaky ReLU(0.2) x (blocks per net)^(-1/4)
    expected = (2 / (1 + 0.2 ** 2) / blocks[0].expand.in_channels) ** 0.5 * (2 * (n - 1)) ** -0.25
    assert abs(std / expected - 1) < 0.1, (std, expected)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) for m in [*G.modules(), *D.modules()])
    assert not has_batchnorm(D)  # (what refuses R1/R2 and a gradient penalty)
    assert torch.equal(G(torch.randn(3, G.z_dim)), torch.zeros(3, *G.img_shape))


def test_resnet_is_refused_at_a_size_it_does_not_make():
    from gankit.config import preset_config
    from gankit.errors import ConfigError
    with pytest.raises(ConfigError, match="resnet64 makes 64x64 images"):
        preset_config("default", model="resnet64", image_size=32).validate()
