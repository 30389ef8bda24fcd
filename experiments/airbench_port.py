"""Port check: jaxrec's airbench94 against the PyTorch reference, piece by piece, on the same numbers.

The reference is `peer_airbench94_cpu.py` (a float32 CPU rewrite of KellerJordan/cifar10-airbench's
legacy/airbench94.py). Its network's weights are ported into jaxrec's model and the two are compared:

1. logits of the same images (train and eval mode), after porting the weights;
2. the whitening filters computed from the same 5,000 training images;
3. the augmented views: the same flips and crop offsets, and the test-time augmentation's views and
   logits;
4. `--steps` optimizer steps on the same batches, through jaxrec's own train step and the reference's
   loop (Nesterov SGD in decoupled form, BatchNorm biases x64, label smoothing summed, the warm-up
   and warm-down schedule, the whitening bias frozen after its epochs, lookahead every 5 steps and
   the final copy): the loss of every step, then every parameter, BatchNorm statistic and the
   lookahead average.

Each line reports the largest absolute and relative difference. Needs torch (not a jaxrec
dependency) and the reference's decoded-image cache (it makes it on first use):

    python experiments/airbench_port.py --peer PATH/peer_airbench94_cpu.py --data PATH/cifar10-jpeg \\
        --out results/airbench94/port.md
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import jax_utils

from jaxrec.config import Config, check
from jaxrec.core.pipeline import Preprocess
from jaxrec.core.tta import with_tta
from jaxrec.models import AXIS, config_for, create_model
from jaxrec.models.airbench import Airbench94, whitening_kernel
from jaxrec.core.state import create_train_state
from jaxrec.core.steps import Objective, train_step


def load_peer(path: str):
    spec = importlib.util.spec_from_file_location("peer_airbench94", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conv_kernel(weight) -> np.ndarray:
    """torch OIHW -> flax HWIO."""
    return np.ascontiguousarray(weight.detach().numpy().transpose(2, 3, 1, 0))


def to_variables(state: dict) -> dict:
    """A reference state dict (the network's, or its lookahead copy) as jaxrec's variables."""
    s = {k: v.detach().numpy() if hasattr(v, "detach") else v for k, v in state.items()}
    params = {"whiten": {"kernel": conv_kernel(state["0.weight"]), "bias": s["0.bias"]},
              "head": {"kernel": s["7.weight"].T.copy()}}
    stats = {}
    for group in (1, 2, 3):
        p = f"{group + 1}."
        params[f"group{group}"] = {"conv1": {"kernel": conv_kernel(state[p + "conv1.weight"])},
                                   "conv2": {"kernel": conv_kernel(state[p + "conv2.weight"])},
                                   "norm1": {"bias": s[p + "norm1.bias"]}, "norm2": {"bias": s[p + "norm2.bias"]}}
        stats[f"group{group}"] = {f"norm{i}": {"mean": s[p + f"norm{i}.running_mean"],
                                               "var": s[p + f"norm{i}.running_var"]} for i in (1, 2)}
    return jax.tree_util.tree_map(jnp.asarray, {"params": params, "batch_stats": stats})


def difference(a, b) -> tuple[float, float]:
    """Largest |a - b| over two trees, and the same relative to the largest |b|."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    gaps = [(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))),
             float(np.max(np.abs(np.asarray(y, np.float64))))) for x, y in pairs]
    worst = max(g for g, _ in gaps)
    return worst, worst / max(max(m for _, m in gaps), 1e-30)


class Report:
    def __init__(self):
        self.lines = []

    def add(self, name: str, gap: tuple[float, float], tolerance: float) -> None:
        ok = gap[1] <= tolerance
        self.lines.append(f"| {name} | {gap[0]:.3g} | {gap[1]:.3g} | {tolerance:g} | {'yes' if ok else '**no**'} |")
        print(self.lines[-1], flush=True)

    def table(self) -> str:
        return "\n".join(["| check | max abs diff | max rel diff | tolerance (rel) | agrees |",
                          "|---|---:|---:|---:|---|", *self.lines])


def port_config(batch: int, epochs: float, whiten_bias_epochs: float) -> Config:
    return check(config_for("airbench94", batch_size=batch, epochs=epochs,
                            whiten_bias_epochs=whiten_bias_epochs, cpu_devices=1))


def compare_logits(peer, torch, report: Report, net, x_torch, x_jax, model) -> None:
    """The reference network `net` and jaxrec's `model` with net's weights ported, on the same images."""
    variables = to_variables(net.state_dict())
    net.eval()
    with torch.no_grad():
        ref = net(x_torch.contiguous(memory_format=torch.channels_last)).numpy()
    ours = model.apply(variables, x_jax, train=False)
    report.add("logits, eval mode (ported weights, 256 test images)", difference(ours, ref), 1e-5)
    training = copy.deepcopy(net).train()  # a train-mode pass moves the running statistics: on a copy
    ref_train = training(x_torch.contiguous(memory_format=torch.channels_last)).detach().numpy()
    ours_train, _ = model.apply(variables, x_jax, train=True, mutable=["batch_stats"])
    report.add("logits, train mode (batch statistics)", difference(ours_train, ref_train), 1e-4)
    for level in (1, 2):
        with torch.no_grad():
            ref_tta = peer.infer(net, x_torch, level).numpy()
        ours_tta = with_tta(model.apply, level)(variables, x_jax, train=False)
        report.add(f"test-time augmentation level {level}, logits", difference(ours_tta, ref_tta), 1e-5)


def compare_views(peer, torch, report: Report, x_uint8, preprocess: Preprocess) -> None:
    """The reference's flip, reflect-pad-2 crop and odd-epoch flip of the same images, given its draws."""
    images = peer.to_float(x_uint8)
    gen = torch.Generator().manual_seed(1)
    flip = torch.rand(len(images), generator=gen) < 0.5
    flipped = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    pad = torch.nn.functional.pad(flipped, (2,) * 4, "reflect")
    gen_crop = torch.Generator().manual_seed(2)
    shifts = torch.randint(-2, 3, size=(len(images), 2), generator=torch.Generator().manual_seed(2))
    crops = peer.batch_crop(pad, 32, 2, gen_crop)
    for odd in (False, True):
        ref = (crops.flip(-1) if odd else crops).permute(0, 2, 3, 1).numpy()
        draws = {"shift": jnp.asarray(shifts.numpy() + 2), "flip": jnp.asarray(flip.numpy()),
                 "odd_epoch": jnp.asarray(odd)}
        ours = preprocess.normalize(preprocess.airbench_views(jnp.asarray(x_uint8), draws))
        report.add(f"flip + translate views{', odd epoch' if odd else ''} ({len(x_uint8)} images)",
                   difference(ours, ref), 1e-6)


class PeerLoop:
    """The reference's training loop (its run(), step for step) over batches of normalised images."""

    def __init__(self, peer, torch, net, ema, total: int, steps_per_epoch: int, whiten_bias_epochs: float, bs: int):
        hyp = peer.HYP
        kilostep = 1024 * (1 + 1 / (1 - hyp["momentum"]))
        lr, wd = hyp["lr"] / kilostep, hyp["weight_decay"] * bs / kilostep
        lr_b = lr * hyp["bias_scaler"]
        norm_b = [p for k, p in net.named_parameters() if "norm" in k and p.requires_grad]
        other = [p for k, p in net.named_parameters() if "norm" not in k and p.requires_grad]
        self.opt = torch.optim.SGD([dict(params=norm_b, lr=lr_b, weight_decay=wd / lr_b),
                                    dict(params=other, lr=lr, weight_decay=wd / lr)], momentum=hyp["momentum"],
                                   nesterov=True)
        warm = int(total * 0.23)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.2 + 0.8 * s / warm if s < warm else 1.0 - 0.93 * (s - warm) / (total - warm))
        self.alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=hyp["label_smoothing"], reduction="none")
        self.peer, self.torch, self.net, self.ema, self.total = peer, torch, net, ema, total
        self.steps_per_epoch, self.whiten_bias_epochs, self.done = steps_per_epoch, whiten_bias_epochs, 0

    def step(self, x, y) -> float:
        net = self.net
        net[0].bias.requires_grad = self.done // self.steps_per_epoch < self.whiten_bias_epochs
        net.train()
        loss = self.loss_fn(net(x.contiguous(memory_format=self.torch.channels_last)), y).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.done += 1
        if self.done % 5 == 0:
            self.peer.lookahead(self.ema, net, self.alpha[self.done].item())
        if self.done >= self.total:
            self.peer.lookahead(self.ema, net, 1.0)
        return loss.item() / len(x)


def compare_training(peer, torch, report: Report, xtr, ytr, xte, preprocess: Preprocess, args) -> list[str]:
    """--steps optimizer steps of both on the same batches of real training images; returns the
    per-step differences as table rows."""
    steps, bs, per_epoch = args.steps, args.batch, args.steps_per_epoch
    config = port_config(bs, steps / per_epoch, args.whiten_bias_epochs)
    torch.manual_seed(0)
    net = peer.make_net()
    ema = {k: v.clone() for k, v in net.state_dict().items()}  # before the whitening, as the reference's run()
    peer.init_whitening(net[0], peer.to_float(xtr[:5000]))
    model = create_model(config.replace(batch_norm="flax"), 10)
    state = create_train_state(config.optimisation, model, (32, 32, 3), jax.random.key(0), per_epoch)
    state = jax_utils.replicate(state)  # one device: BatchNorm averages over the step's device axis
    start = jax_utils.replicate(to_variables(net.state_dict()))
    state = state.replace(params=start["params"], model_state={"batch_stats": start["batch_stats"]},
                          averaged=jax_utils.replicate(to_variables(ema)))
    state = state.replace(opt_state=jax.pmap(state.tx.init)(state.params))
    reference = PeerLoop(peer, torch, net, ema, steps, per_epoch, args.whiten_bias_epochs, bs)
    # The yardstick: the reference against itself on one thread (other sums, other rounding).
    twin_net = copy.deepcopy(net)
    twin = PeerLoop(peer, torch, twin_net, {k: v.clone() for k, v in ema.items()}, steps, per_epoch,
                    args.whiten_bias_epochs, bs)
    threads = torch.get_num_threads()
    objective = Objective.of(config.optimisation, steps)
    step_fn = jax.pmap(lambda s, b: train_step(s, b, jax.random.key(0), preprocess=preprocess, objective=objective,
                                               axis_name=AXIS), axis_name=AXIS)
    rng = np.random.default_rng(0)
    rows, losses, ref_losses = [], [], []
    for step in range(1, steps + 1):
        pick = rng.choice(len(xtr), bs, replace=False)
        ref_losses.append(reference.step(peer.to_float(xtr[pick]), torch.from_numpy(ytr[pick])))
        torch.set_num_threads(1)
        twin.step(peer.to_float(xtr[pick]), torch.from_numpy(ytr[pick]))
        torch.set_num_threads(threads)
        batch = {"image": jnp.asarray(xtr[pick])[None], "label": jnp.asarray(ytr[pick], jnp.int32)[None],
                 "index": jnp.arange(bs, dtype=jnp.int32)[None]}
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"][0]))
        ours, theirs = jax_utils.unreplicate(state), to_variables(net.state_dict())
        gaps = [difference(ours.params, theirs["params"])[1],
                difference(ours.model_state["batch_stats"], theirs["batch_stats"])[1],
                difference(ours.averaged, to_variables(ema))[1],
                difference(to_variables(twin_net.state_dict())["params"], theirs["params"])[1]]
        rows.append(f"| {step} | {losses[-1]:.6f} | {ref_losses[-1]:.6f} | " + " | ".join(f"{g:.2g}" for g in gaps) + " |")
        print(rows[-1], flush=True)
        if step == 1:
            report.add("parameters after 1 step", difference(ours.params, theirs["params"]), 1e-5)
            report.add("BatchNorm running mean and (biased) variance after 1 step",
                       difference(ours.model_state["batch_stats"], unbias_free(theirs["batch_stats"], bs)), 1e-4)
    label = f"{steps} steps of {bs}"
    report.add(f"training loss of each step ({label})", difference(np.array(losses), np.array(ref_losses)), 1e-4)
    report.add(f"parameters after {label}", difference(ours.params, theirs["params"]), 1e-4)
    x = preprocess.normalize(jnp.asarray(xte[:256]))
    eval_model = Airbench94(10, norm_axis=None)
    net.eval()
    with torch.no_grad():
        ref_logits = net(peer.to_float(xte[:256]).contiguous(memory_format=torch.channels_last)).numpy()
    twin_net.eval()
    with torch.no_grad():
        twin_logits = twin_net(peer.to_float(xte[:256]).contiguous(memory_format=torch.channels_last)).numpy()
    yardstick = difference(twin_logits, ref_logits)
    print(f"  the reference on 1 thread against {threads}: eval-mode logits differ by {yardstick}", flush=True)
    report.add(f"eval-mode logits after {label} (the reference on 1 thread against {threads}: "
               f"{yardstick[1]:.2g})", difference(eval_model.apply(ours.variables, x), ref_logits),
               max(1e-4, 10 * yardstick[1]))
    return rows


def unbias_free(stats: dict, batch: int) -> dict:
    """The reference's running variances after ONE step from var = 1, with PyTorch's unbiased batch
    variance turned back into the biased one jaxrec (flax) averages: running = 0.6 + 0.4 v n/(n-1)."""
    sizes = {"group1": (15, 15), "group2": (7, 7), "group3": (3, 3)}
    out = {}
    for group, norms in stats.items():
        n = batch * sizes[group][0] * sizes[group][1]
        out[group] = {name: {"mean": v["mean"], "var": 0.6 + (v["var"] - 0.6) * (n - 1) / n} for name, v in norms.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", required=True, help="path of peer_airbench94_cpu.py")
    parser.add_argument("--data", required=True, help="the CIFAR-10 image folder the reference reads")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/peer_airbench94"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps_per_epoch", type=int, default=2,
                        help="so that the whitening bias freezes within the steps (after --whiten_bias_epochs)")
    parser.add_argument("--whiten_bias_epochs", type=float, default=3)
    parser.add_argument("--out", help="write the report here (Markdown)")
    args = parser.parse_args(argv)
    # Checked first: a wrong path or a missing torch would otherwise end in a traceback of the import machinery.
    problem = (f"--peer {args.peer} is not a file; pass the path of peer_airbench94_cpu.py"
               if not Path(args.peer).is_file() else
               "the port check needs torch (not a jaxrec dependency); install it into this Python environment"
               if importlib.util.find_spec("torch") is None else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    jax.config.update("jax_default_matmul_precision", "highest")
    peer = load_peer(args.peer)
    import torch  # noqa: PLC0415 - a measuring stick, not a dependency

    torch.set_num_threads(os.cpu_count())
    xtr, ytr = peer.load_split(Path(args.data), "train", Path(args.cache))
    xte, _ = peer.load_split(Path(args.data), "test", Path(args.cache))
    mean, std = (255 * peer.MEAN.flatten()).tolist(), (255 * peer.STD.flatten()).tolist()
    preprocess = Preprocess(mean=tuple(mean), std=tuple(std))
    report = Report()

    # 2. Whitening filters from the same 5,000 images (the reference's first 5,000).
    torch.manual_seed(0)
    net = peer.make_net()
    peer.init_whitening(net[0], peer.to_float(xtr[:5000]))
    ours = whitening_kernel(np.asarray(preprocess.normalize(jnp.asarray(xtr[:5000]))))
    ref = conv_kernel(net[0].weight)
    # An eigenvector's sign is LAPACK's choice; jaxrec fixes it (largest entry positive), so match signs first.
    signs = np.sign(np.sum(ours * ref, axis=(0, 1, 2)))
    report.add("whitening filters (5,000 training images; up to each eigenvector's sign)",
               difference(ours * signs, ref), 1e-4)
    flips = int(np.sum(signs[:len(signs) // 2] < 0))
    print(f"  {flips} of {len(signs) // 2} eigenvectors came out with the other sign", flush=True)

    # 1. Logits with ported weights (after a few reference steps, so BatchNorm statistics are not trivial).
    with torch.no_grad():  # non-trivial running statistics: a few forward passes in train mode
        net.train()
        for start in range(0, 2048, 512):
            net(peer.to_float(xtr[start:start + 512]).contiguous(memory_format=torch.channels_last))
    model = Airbench94(10, norm_axis=None)
    x_uint8 = xte[:256]
    x = preprocess.normalize(jnp.asarray(x_uint8))
    compare_logits(peer, torch, report, net, peer.to_float(x_uint8), x, model)
    variables = to_variables(net.state_dict())
    matmul_model = Airbench94(10, norm_axis=None, batch_norm="matmul")
    a, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    b, _ = matmul_model.apply(variables, x, train=True, mutable=["batch_stats"])
    report.add("logits, train mode: --batch_norm matmul against flax's BatchNorm", difference(b, a), 1e-4)

    # 3. Augmented views.
    compare_views(peer, torch, report, xtr[:512], Preprocess(mean=tuple(mean), std=tuple(std), translate=2,
                                                            flip="alternating"))
    # 4. Training steps.
    rows = compare_training(peer, torch, report, xtr, ytr, xte, preprocess, args)

    text = (f"# airbench94 port check: jaxrec against {Path(args.peer).name}\n\n"
            f"`python experiments/airbench_port.py --peer {Path(args.peer).name} --data DATA --steps {args.steps} "
            f"--batch {args.batch} --steps_per_epoch {args.steps_per_epoch}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
            f"jax {jax.__version__}, torch {torch.__version__}, float32 on the CPU "
            f"(jax_default_matmul_precision highest).\n\n{report.table()}\n\n"
            f"Per step of the training comparison (relative differences, to the largest value of each):\n\n"
            f"| step | jaxrec loss | reference loss | parameters | BatchNorm statistics | lookahead average | "
            f"reference on 1 thread: parameters |\n|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0 if all("**no**" not in line for line in report.lines) else 1


if __name__ == "__main__":
    sys.exit(main())
