"""Known answers for every objective, the gradient penalty and weight clipping."""
import math

import pytest
import torch
from torch import nn

from gankit.nets.losses import OBJECTIVES, clip_weights, gradient_penalty, r1_r2_penalty


def test_bce_equals_sigmoid_plus_bceloss():
    torch.manual_seed(0)
    r, f = torch.randn(64) * 3, torch.randn(64) * 3
    bce = nn.BCELoss()
    lab_d = bce(torch.sigmoid(r), torch.ones(64)) + bce(torch.sigmoid(f), torch.zeros(64))
    lab_g = bce(torch.sigmoid(f), torch.ones(64))
    torch.testing.assert_close(OBJECTIVES["bce"].d_loss(r, f), lab_d)
    torch.testing.assert_close(OBJECTIVES["bce"].g_loss(f), lab_g)


def test_bce_at_zero_logits():
    z = torch.zeros(4)
    assert OBJECTIVES["bce"].d_loss(z, z).item() == pytest.approx(2 * math.log(2))
    assert OBJECTIVES["bce"].g_loss(z).item() == pytest.approx(math.log(2))
    assert OBJECTIVES["bce"].score(z).tolist() == [0.5] * 4


def test_bce_is_stable_for_huge_logits():
    r, f = torch.tensor([1e4]), torch.tensor([-1e4])
    assert OBJECTIVES["bce"].d_loss(r, f).item() == 0.0
    assert OBJECTIVES["bce"].g_loss(f).item() == pytest.approx(1e4)


@pytest.mark.parametrize("name", ["wgan", "wgan-gp"])
def test_wasserstein(name):
    r, f = torch.tensor([3.0, 1.0]), torch.tensor([0.5, -0.5])
    assert OBJECTIVES[name].d_loss(r, f).item() == pytest.approx(0.0 - 2.0)
    assert OBJECTIVES[name].g_loss(f).item() == pytest.approx(0.0)
    assert OBJECTIVES[name].wasserstein


def test_hinge_and_lsgan():
    r, f = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    assert OBJECTIVES["hinge"].d_loss(r, f).item() == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    assert OBJECTIVES["hinge"].g_loss(f).item() == pytest.approx(0.75)
    assert OBJECTIVES["lsgan"].d_loss(r, f).item() == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (4 + 0.25) / 2)
    assert OBJECTIVES["lsgan"].g_loss(f).item() == pytest.approx(0.5 * (9 + 0.25) / 2)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x>: the gradient is w everywhere, so the penalty is (||w|| - 1)^2.
    D = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        D[1].weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))
    x_real, x_fake = torch.randn(8, 1, 2, 2), torch.randn(8, 1, 2, 2)
    gp = gradient_penalty(lambda x: D(x).view(-1), x_real, x_fake)
    assert gp.item() == pytest.approx((5 - 1) ** 2)
    gp.backward()  # the penalty is differentiable in D's weights
    assert D[1].weight.grad is not None


def test_clip_weights():
    m = nn.Linear(10, 10)
    with torch.no_grad():
        m.weight.mul_(100)
    clip_weights(m, 0.01)
    assert all(p.abs().max() <= 0.01 for p in m.parameters())


def test_rpgan_pairs_each_real_with_a_fake():
    """RpGAN (R3GAN's loss): D's softplus(-(D(x) - D(G(z)))), G's softplus(-(D(G(z)) - D(x))), pair by pair."""
    r, f = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    rp = OBJECTIVES["rpgan"]
    expect_d = (math.log1p(math.exp(-3.0)) + math.log1p(math.exp(1.0))) / 2
    expect_g = (math.log1p(math.exp(3.0)) + math.log1p(math.exp(-1.0))) / 2
    assert rp.d_loss(r, f).item() == pytest.approx(expect_d) and rp.g_loss(f, r).item() == pytest.approx(expect_g)
    assert rp.d_loss(r, r).item() == pytest.approx(math.log(2))  # D cannot tell: log 2, as the pair is even
    assert rp.relativistic and not OBJECTIVES["bce"].relativistic
    with pytest.raises(TypeError):
        rp.g_loss(f)  # a relativistic G loss needs the reals' scores


def test_r1_of_a_linear_critic_is_its_squared_weight_norm():
    """grad_x (w . x + b) = w for every x, so E||grad||^2 = ||w||^2, whatever the images."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1)
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    penalty = r1_r2_penalty(lin(x.flatten(1)).squeeze(1), x)
    assert penalty.item() == pytest.approx(lin.weight.square().sum().item(), rel=1e-5)
    penalty.backward()  # the penalty's graph reaches the weights: d||w||^2/dw = 2w
    torch.testing.assert_close(lin.weight.grad, 2 * lin.weight.detach())
