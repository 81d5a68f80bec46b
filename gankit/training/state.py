"""What a checkpoint holds besides the config: the networks with their optimisers and noise
generator (`Nets`), and the training loop's counters and accumulators (`Tally`). Each has
`state_dict()` / `load_state_dict()`, and a checkpoint is the union of the two (flat keys, the
format gankit has always written)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..config import Config
from ..device import resolve_channels_last
from ..nets import EMA, build_models, make_optimizer
from ..runs.stats import GROUPS, LAST
from .dist import Dist, wrap as wrap_ddp


@dataclass
class Nets:
    """G, D, the EMA of G, both optimisers and the two noise generators; plus what the step calls
    (G_train, D_train, D_frozen): the networks themselves, or DDP wrappers and compiled versions
    of them, whose weights stay in G and D."""
    G: nn.Module
    D: nn.Module
    G_ema: EMA | None
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    noise: torch.Generator  # draws z, flips and GP interpolation weights; its state is checkpointed
    aug_noise: torch.Generator  # draws the augmentations' randomness (DiffAugment, ADA), checkpointed too
    memory_format: torch.memory_format
    G_train: nn.Module
    D_train: nn.Module  # D's two passes of the D update
    D_frozen: nn.Module  # D judging the fake batch in G's update (no DDP: its weights get no gradients there)

    @property
    def G_show(self) -> nn.Module:
        """The weights grids and exports show: the EMA when there is one."""
        return self.G_ema.module if self.G_ema is not None else self.G

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "noise": self.noise.get_state(),
                        "augment": self.aug_noise.get_state()}}

    def load_state_dict(self, state: dict) -> str | None:
        """Load a checkpoint's weights, optimiser states and random streams. Returns a note for the
        log when a stream cannot continue: a CPU generator's state does not fit a CUDA one, or the
        checkpoint predates the augmentation stream and the run augments. It is then re-seeded from
        the run's seed and step, so a device change resumes."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            ema_state = state["G_ema"]
            if "n_averaged" in ema_state:  # written by gankit 0.1's AveragedModel
                ema_state = {k: v for k, v in ema_state.items() if k != "n_averaged"}
                ema_state["n_updates"] = state["G_ema"]["n_averaged"]
            self.G_ema.load_state_dict(ema_state)
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        torch.set_rng_state(state["rng"]["torch"])
        seed, step = state["config"]["seed"], state["step"]
        if state["rng"]["noise"].numel() != self.noise.get_state().numel():
            for generator, first in ((self.noise, noise_seed(seed)), (self.aug_noise, aug_noise_seed(seed))):
                generator.manual_seed(first + step)
            return (f"the noise stream was saved on another kind of device than {self.noise.device.type}: "
                    f"re-seeded at step {step} (the run continues, not bit for bit as on one device)")
        self.noise.set_state(state["rng"]["noise"])
        if "augment" in state["rng"]:
            self.aug_noise.set_state(state["rng"]["augment"])
            return None
        self.aug_noise.manual_seed(aug_noise_seed(seed) + step)
        if state["config"].get("augment", "none") == "none":
            return None
        return (f"the checkpoint was written before augmentations drew from a stream of their own: theirs is "
                f"seeded at step {step} (the run continues, not bit for bit as it would have)")

    def finite(self) -> bool:
        params = [*self.G.parameters(), *self.D.parameters()]
        return bool(torch.stack([p.isfinite().all() for p in params]).all())

    def scale_learning_rates(self, cfg: Config, factor: float) -> None:
        for opt, lr in ((self.opt_G, cfg.g_lr), (self.opt_D, cfg.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * factor


def build_nets(cfg: Config, ddp: Dist, device: torch.device) -> Nets:
    """Models, EMA, optimisers and noise. Weights are drawn on the CPU from the seed, so every
    device and every rank starts from the same weights."""
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    if ddp.enabled and cfg.sync_bn:
        G, D = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in (G, D))
    channels_last = resolve_channels_last(cfg.channels_last, G, D, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G = G.to(device, memory_format=memory_format)
    D = D.to(device, memory_format=memory_format)
    G_ema = EMA(G, cfg.ema) if cfg.ema > 0 else None
    opt_G = make_optimizer(cfg.g_optimizer, G.parameters(), cfg.g_lr, cfg.g_betas, cfg.g_weight_decay, cfg.optim_impl)
    opt_D = make_optimizer(cfg.d_optimizer, D.parameters(), cfg.d_lr, cfg.d_betas, cfg.d_weight_decay, cfg.optim_impl)
    noise = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed))
    aug_noise = torch.Generator(device=device).manual_seed(aug_noise_seed(cfg.seed))
    # D's buffers are not broadcast (rank 0's would overwrite BatchNorm statistics between the
    # real and fake passes); G's are, so every rank's G is rank 0's. Spectral norm's vectors (also D
    # buffers) follow from D's weights alone, which DDP keeps equal, so they stay equal across ranks.
    G_train, D_train, D_frozen = G, D, D
    if ddp.enabled:
        G_train = wrap_ddp(G, device, sync_buffers=True)
        D_train = wrap_ddp(D, device, sync_buffers=False)
    if cfg.compile:
        # Inductor's default mode, no CUDA graphs: D runs twice per update (real, then fake) and a
        # graph's second replay would overwrite the first one's output before backward reads it.
        G_train, D_train = torch.compile(G_train), torch.compile(D_train)
        D_frozen = torch.compile(D) if ddp.enabled else D_train
    return Nets(G, D, G_ema, opt_G, opt_D, noise, aug_noise, memory_format, G_train, D_train, D_frozen)


def noise_seed(seed: int) -> int:
    """The first state of a run's noise stream (z, flips, GP weights): the weights take `seed` itself."""
    return seed + 1


def aug_noise_seed(seed: int) -> int:
    """The first state of a run's augmentation stream. A stream of its own, so a run with --augment
    sees the same z, flips and batches as the same run without, and ADA whose p stays 0 trains
    exactly as no augmentation (its draws do not depend on p). Far from every other run's seed + 1."""
    return seed + (1 << 40)


@dataclass
class Tally:
    """The loop's counters, and the statistics of gankit.runs.stats summed on the device between log
    ticks (read once per tick, so no step waits for the host), by name: `add` and `means`."""
    sums: Tensor  # each group of gankit.runs.stats.GROUPS ("D", "G", "reg", "recon"), summed since the last tick
    grad_norms: Tensor  # [D, G] gradient norms, computed on the step before each tick
    balance: Tensor  # [sign of the last loss comparison (+1, -1; 0: none yet)] (balance.py)
    ada: Tensor  # [ADA's probability p, sum of E[sign(D(x))] since p's last adjustment] (gankit.nets.ada)
    step: int = 0  # D steps done
    n_D: int = 0  # D steps since the last tick
    n_G: int = 0  # G steps since the last tick
    n_reg: int = 0  # D steps that computed R1/R2 since the last tick
    n_recon: int = 0  # D steps whose decoders reconstructed real images since the last tick
    elapsed: float = 0.0  # seconds (training and evaluations) of earlier processes of this run
    eval_s: float = 0.0  # of all seconds so far, those spent on quality evaluations
    best_fid: float = math.inf  # best FID so far; best.safetensors holds that generator
    low_D_ticks: int = 0  # consecutive log ticks with D winning outright
    overfit_ticks: int = 0  # consecutive log ticks with r_t above the memorising line
    rollbacks: int = 0  # times the NaN policy reloaded the last good checkpoint
    TENSORS: ClassVar = ("sums", "grad_norms", "balance", "ada")  # updated in place on the device
    SLICES: ClassVar = {over: slice(start, start + len(names)) for over, names, start in zip(
        GROUPS, GROUPS.values(), itertools.accumulate((len(v) for v in GROUPS.values()), initial=0))}
    COUNTS: ClassVar = {"D": "n_D", "G": "n_G", "reg": "n_reg", "recon": "n_recon"}

    @classmethod
    def zeros(cls, device: torch.device) -> "Tally":
        return cls(torch.zeros(sum(map(len, GROUPS.values())), device=device), torch.zeros(2, device=device),
                   torch.zeros(1, device=device), torch.zeros(2, device=device))

    def add(self, over: str, **values: Tensor) -> None:
        """One step's statistics of a group (gankit.runs.stats.GROUPS[over]: "D", "G", "reg", "recon"), by
        name, added to the tick's sums on the device; the group's step count goes up by one."""
        names = GROUPS[over]
        if len(values) != len(names):
            raise TypeError(f"Tally.add({over!r}): expected {', '.join(names)}; got {', '.join(values)}")
        self.sums[self.SLICES[over]] += torch.stack([values[n] for n in names])
        setattr(self, self.COUNTS[over], getattr(self, self.COUNTS[over]) + 1)

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict, keep: tuple[str, ...] = ()) -> None:
        """Take every value from `state` except those named in `keep`."""
        state = upgrade(state)
        for f in fields(self):
            if f.name in keep:
                continue
            if f.name in self.TENSORS:
                if f.name in state:  # (older checkpoints have no ada: it starts afresh)
                    getattr(self, f.name).copy_(state[f.name])
            elif f.name in state:  # eval_s is missing from checkpoints of gankit 0.1
                setattr(self, f.name, state[f.name])

    def reset_tick(self) -> None:
        self.sums.zero_()
        self.n_D = self.n_G = self.n_reg = self.n_recon = 0

    def means(self) -> Tensor:
        """Every statistic kept on the device, in gankit.runs.stats.DEVICE_STATS' order, as one device
        tensor (to average across ranks; gankit.runs.stats.named then names them)."""
        last = {"grad_norm_D": self.grad_norms[:1], "grad_norm_G": self.grad_norms[1:], "ada_p": self.ada[:1]}
        return torch.cat([*(self.sums[self.SLICES[over]] / max(getattr(self, self.COUNTS[over]), 1) for over in GROUPS),
                          *(last[name] for name in LAST)])


def upgrade(state: dict) -> dict:
    """A checkpoint written before the statistics were named once (gankit.runs.stats): its per-kind
    accumulators (acc_D, acc_G, overfit, balance's counts, reg) laid out as `sums`, by name."""
    if "acc_D" not in state:
        return state
    old = {**dict(zip(("loss_D", "d_real", "d_fake", "wasserstein"), state["acc_D"])), "loss_G": state["acc_G"][0]}
    old |= {"r_t": state["overfit"][0]} if "overfit" in state else {}
    old |= dict(zip(("crossing_rate", "g_above"), state["balance"][:2])) if "balance" in state else {}
    old |= dict(zip(("r1", "r2"), state["reg"][:2])) if "reg" in state else {}
    zero = state["acc_D"].new_zeros(())
    state = dict(state, sums=torch.stack([old.get(n, zero) for names in GROUPS.values() for n in names]),
                 n_reg=int(state["reg"][2]) if "reg" in state else 0)
    if "balance" in state:
        state["balance"] = state["balance"][2:]
    return state
