"""Training a bundle's decoder on Poisson synthetic defects of a few normal images.

Only the decoder's per-tap projections learn; the encoder, its LayerNorm and the text
embeddings stay frozen. Adam (lr 1e-3), focal + Dice per tap, gradient accumulation, a tqdm
bar with the running loss. Every sample is a function of ``(seed, epoch, index)`` and the
optimizer state is checkpointed into the bundle (``train_checkpoint.pt``), so an interrupted
run resumes where it stopped and ends with the same weights as an uninterrupted one. The
checkpoint names the bundle it was made for (``bundle_origin``), so one left by another bundle
is refused rather than "resumed".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.bundle import load_detector, save_tensors
from models.bundle_files import CHECKPOINT_FILE, MEMORY_FILE, TEXT_FILE
from models.data.metrics import pixel_auroc
from models.data.poisson import SyntheticDefectSet
from models.detector import BatteryDetector
from models.recipe import (
    Recipe,
    file_sha256,
    load_recipe,
    save_recipe,
)
from models.training.head_check import HELD_OUT_SEED, HeadCheck, check_head
from models.training.losses import decoder_loss

CHECKPOINT_VERSION = 2  # 2: records the bundle it belongs to (``origin``)
# settings that must match for a checkpoint to be resumed (epochs may grow)
_RESUME_KEYS = ("batch_size", "accumulate", "lr", "seed", "samples_per_epoch", "gamma", "on_part")
EARLY_STOP_SEED = HELD_OUT_SEED + 1  # held-out defects for early stopping, not the head check's
# The paper's schedule (BatteryGPT after AnomalyGPT): 80 epochs, batch 32, ~400 images an epoch;
# batch 32 as 8 x 4 accumulated, so it fits next to a ViT-H on a 16 GB GPU.
PAPER_SCHEDULE = {
    "epochs": 80, "batch_size": 8, "accumulate": 4, "samples_per_epoch": 400, "patience": 10
}
ARCH_SCHEDULES = {"vit-h-14": PAPER_SCHEDULE}  # the small backbones keep the short default


@dataclass
class TrainConfig:
    """How to train. ``samples_per_epoch`` (half normal, half synthetic defects) defaults to
    ``max(64, 2 x number of images)``. ``for_arch`` gives ``vit-h-14`` the paper's schedule
    (80 epochs of 400 samples at batch 32, early stopping after 10 epochs without a better
    held-out pixel AUROC); the small backbones keep this short one (10 epochs, batch 8)."""

    epochs: int = 10
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 1e-3
    seed: int = 0
    samples_per_epoch: int | None = None
    gamma: float = 2.0
    on_part: bool = True  # synthetic defects centred on the part (see poisson.foreground)
    checkpoint_every: int = 25  # optimizer steps between mid-epoch checkpoints
    patience: int | None = None  # epochs without a better held-out AUROC before stopping
    held_out: int = 32  # held-out synthetic samples scored after each epoch (with patience)

    @classmethod
    def for_arch(cls, arch: str, **overrides) -> TrainConfig:
        """The default schedule of an architecture (the paper's for ``vit-h-14``), with the
        ``overrides`` that are not None on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**ARCH_SCHEDULES.get(arch, {}), **given})

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulate", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 2:
            raise ValueError(f"samples_per_epoch must be at least 2, got {self.samples_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")


@dataclass
class TrainResult:
    """What a call to ``train_bundle`` did."""

    epochs_done: int
    steps_done: int
    epoch_losses: list[float] = field(default_factory=list)
    resumed_from: tuple[int, int] | None = None  # (epoch, step within epoch)
    steps_run: int = 0  # optimizer steps this call made (0: it was already trained)
    head: HeadCheck | None = None  # the decoder's scale and the fusion chosen after training
    held_out_auroc: list[float] = field(default_factory=list)  # per epoch, with patience
    best_epoch: int | None = None  # 1-based epoch whose weights were kept (with patience)
    stopped_early: bool = False


def trainable_parameters(detector: BatteryDetector) -> list[torch.nn.Parameter]:
    """Freeze everything but the decoder's projections; return those."""
    detector.requires_grad_(False)
    params = [p for lin in detector.decoder.proj for p in lin.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def bundle_origin(bundle: str | Path, recipe: Recipe | None = None) -> str:
    """An id of what training leaves alone: encoder, text embeddings, memory bank, creation.

    Stays the same while the decoder trains and changes when the bundle is recreated (another
    product, references or seed), so a checkpoint can tell whether it belongs to this bundle.
    """
    bundle = Path(bundle)
    recipe = recipe or load_recipe(bundle)
    h = hashlib.sha256(f"{recipe.encoder_sha256}:{recipe.created}".encode())
    for name in (TEXT_FILE, MEMORY_FILE):
        if (bundle / name).is_file():
            h.update(name.encode())
            h.update(file_sha256(bundle / name).encode())
    return h.hexdigest()[:16]


def _check_resumable(ckpt: dict, path: Path, origin: str, settings: dict, n_images: int) -> None:
    """Refuse a checkpoint of another bundle, or one made with other settings or data."""
    if ckpt.get("origin") != origin:
        made_for = ckpt.get("origin") or "an unnamed bundle (an older checkpoint)"
        raise ValueError(
            f"{path} belongs to another bundle (made for {made_for}, this bundle is {origin}: "
            "recreated, or copied over); delete it to train this bundle from its current decoder"
        )
    if ckpt.get("settings") != settings or ckpt.get("n_images") != n_images:
        raise ValueError(
            f"{path} was made with other settings or data "
            f"({ckpt.get('settings')}, {ckpt.get('n_images')} images); pass the same "
            f"flags, or delete it to start over from the bundle's current decoder"
        )


def _mark_uncalibrated(bundle: Path, recipe: Recipe) -> None:
    """New weights, new score scale: calibrated thresholds no longer hold."""
    if recipe.thresholds.calibrated:
        recipe.thresholds = recipe.thresholds.model_copy(update={"calibrated": False})
        save_recipe(bundle, recipe)


def _proj_state(detector: BatteryDetector) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in detector.decoder.proj.state_dict().items()}


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(bundle: str | Path) -> dict | None:
    """The bundle's training checkpoint, or None when it has none."""
    path = Path(bundle) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


@torch.no_grad()
def held_out_auroc(detector: BatteryDetector, data: SyntheticDefectSet) -> float:
    """Pixel AUROC of the decoder's map on held-out synthetic defects (early stopping)."""
    device = detector.text_embeddings.device
    labels, maps = [], []
    for i in range(len(data)):
        x, y, _ = data[i]
        taps = detector.encoder(x[None].to(device))
        maps.append(detector.decoder_map(taps)[0].cpu().numpy())
        labels.append(y.numpy())
    return pixel_auroc(labels, maps) or 0.5


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def train_bundle(
    bundle: str | Path,
    images: Sequence[np.ndarray],
    config: TrainConfig | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the bundle's decoder in place, resuming from its checkpoint if there is one.

    Args:
        bundle: the model bundle folder; its decoder tensors are rewritten after every epoch.
        images: the normal images (frames as read from disk) to synthesise defects from.
        config: training settings; defaults when None.
        progress: show a tqdm bar with the loss.
        device: torch device; CUDA when available, else CPU.
        on_step: called as ``on_step(global_step, loss)`` after each optimizer step (progress
            reporting; raising ``KeyboardInterrupt`` there stops training with a checkpoint).

    Raises:
        ValueError: fewer than 1 image, bad settings, or a checkpoint made with other
            settings or for another bundle.
        KeyboardInterrupt: re-raised after the checkpoint is written, so the run can resume.
    """
    cfg = config or TrainConfig()
    bundle = Path(bundle)
    if len(images) < 1:
        raise ValueError("training needs at least one normal image")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = _Run(bundle, images, cfg, device)
    total = cfg.epochs * run.steps_per_epoch
    done = min(total, run.start_epoch * run.steps_per_epoch + run.start_step)
    if done < total:  # a step will run, resumed or not
        _mark_uncalibrated(bundle, run.recipe)
    bar = tqdm(total=total, initial=done, desc="train", unit="step", disable=not progress)
    try:
        run.train(bar, on_step)
    except KeyboardInterrupt:
        run.checkpoint(run.epoch, run.step, run.partial)
        save_tensors(bundle, run.detector)
        bar.close()
        raise
    bar.close()
    head = run.finish(images)
    return TrainResult(
        epochs_done=max(cfg.epochs, run.start_epoch),
        steps_done=max(total, done),
        epoch_losses=run.losses,
        resumed_from=run.resumed,
        steps_run=total - done,
        head=head,
        held_out_auroc=list(run.best["aurocs"]),
        best_epoch=None if run.best["epoch"] is None else run.best["epoch"] + 1,
        stopped_early=bool(run.best.get("stopped")),
    )


class _Run:
    """One call of ``train_bundle``: the detector, data and optimizer, where training resumes
    (``start_epoch``, ``start_step``) and where it is (``epoch``, ``step``, ``partial`` loss),
    all written to the checkpoint so that an interrupted run goes on from there."""

    def __init__(
        self, bundle: Path, images: Sequence[np.ndarray], cfg: TrainConfig, device: torch.device
    ) -> None:
        self.bundle, self.cfg, self.device, self.n_images = bundle, cfg, device, len(images)
        self.recipe = load_recipe(bundle)
        self.detector = load_detector(bundle, device)
        params = trainable_parameters(self.detector)
        # an untrained OpenCLIP decoder scores with its last tap
        self.detector.decoder.use_all_taps()
        torch.manual_seed(cfg.seed)
        size, bit_depth = self.detector.image_size, self.recipe.bit_depth
        self.data = SyntheticDefectSet(
            images,
            size=size,
            length=cfg.samples_per_epoch,
            seed=cfg.seed,
            bit_depth=bit_depth,
            on_part=cfg.on_part,
        )
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        self.settings = {k: v for k, v in asdict(cfg).items() if k in _RESUME_KEYS}
        self.settings["samples_per_epoch"] = len(self.data)
        n_micro = math.ceil(len(self.data) / cfg.batch_size)
        self.steps_per_epoch = math.ceil(n_micro / cfg.accumulate)
        self.held_out = None
        if cfg.patience is not None:
            self.held_out = SyntheticDefectSet(
                images, size, cfg.held_out, EARLY_STOP_SEED, bit_depth=bit_depth,
                on_part=cfg.on_part,
            )
        # early stopping: held-out AUROC per epoch and the best epoch's projections
        self.best: dict = {
            "aurocs": [], "epoch": None, "auroc": None, "proj": None, "stopped": False
        }
        self.path = bundle / CHECKPOINT_FILE
        self.origin = bundle_origin(bundle, self.recipe)
        self.losses: list[float] = []
        self.start_epoch, self.start_step, self.partial = 0, 0, 0.0
        self.resumed: tuple[int, int] | None = None
        self._resume()
        self.epoch, self.step = self.start_epoch, self.start_step

    def _resume(self) -> None:
        """Continue from the bundle's checkpoint, if it has one made for this run."""
        ckpt = load_checkpoint(self.bundle)
        if ckpt is None:
            return
        _check_resumable(ckpt, self.path, self.origin, self.settings, self.n_images)
        self.detector.decoder.proj.load_state_dict(ckpt["proj"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.start_epoch, self.start_step = ckpt["epoch"], ckpt["step"]
        self.losses = list(ckpt["losses"])
        self.best = ckpt.get("best", self.best)
        self.resumed = (self.start_epoch, self.start_step)
        self.partial = ckpt.get("partial_loss", 0.0)

    def checkpoint(self, epoch: int, step: int, partial_loss: float) -> None:
        _save_checkpoint(
            self.path,
            {
                "version": CHECKPOINT_VERSION,
                "origin": self.origin,
                "settings": self.settings,
                "n_images": self.n_images,
                "epoch": epoch,
                "step": step,
                "proj": _proj_state(self.detector),
                "optimizer": self.optimizer.state_dict(),
                "losses": self.losses,
                "partial_loss": partial_loss,
                "best": self.best,
            },
        )

    def train(self, bar: tqdm, on_step: Callable[[int, float], None] | None) -> None:
        """The remaining epochs; after each, the checkpoint and the decoder tensors are
        written, and with ``patience`` training may stop early."""
        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.epochs):
            self.epoch = epoch
            self.data.set_epoch(epoch)
            self._epoch(epoch, bar, on_step)
            stop = self.held_out is not None and _early_stop(
                self.detector, self.held_out, self.best, epoch, cfg
            )
            self.checkpoint(cfg.epochs if stop else epoch + 1, 0, 0.0)
            save_tensors(self.bundle, self.detector)
            if stop:
                break

    def _epoch(self, epoch: int, bar: tqdm, on_step: Callable[[int, float], None] | None) -> None:
        """The optimizer steps of one epoch (from the resume point in the first one)."""
        cfg, per_epoch = self.cfg, self.steps_per_epoch
        order = np.random.default_rng([cfg.seed, epoch, 1]).permutation(len(self.data))
        micro = _batches(order, cfg.batch_size)
        first = self.start_step if epoch == self.start_epoch else 0
        epoch_loss = self.partial if epoch == self.start_epoch else 0.0
        for k in range(first, per_epoch):
            self.step = k  # the resume point until this step's update is made
            step_loss = self._step(micro[k * cfg.accumulate : (k + 1) * cfg.accumulate])
            self.step, self.partial = k + 1, epoch_loss + step_loss
            epoch_loss = self.partial
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{step_loss:.4f}")
            if self.step % cfg.checkpoint_every == 0 and self.step < per_epoch:
                self.checkpoint(epoch, self.step, self.partial)
            if on_step is not None:
                on_step(epoch * per_epoch + self.step, step_loss)
        self.losses.append(epoch_loss / per_epoch)
        self.step, self.partial = 0, 0.0

    def _step(self, group: list[np.ndarray]) -> float:
        """One optimizer step, gradients accumulated over ``group``'s micro-batches; its loss."""
        det, grid = self.detector, self.detector.encoder.grid_size
        n_group = sum(len(b) for b in group)
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for idx in group:
            xs, ys, _ = zip(*(self.data[int(i)] for i in idx), strict=True)
            x, y = torch.stack(xs).to(self.device), torch.stack(ys).to(self.device)
            with torch.no_grad():
                taps = det.encoder(x)
            logits = det.decoder(taps, det.text_embeddings)
            loss = decoder_loss(logits, y, grid, self.cfg.gamma) * (len(idx) / n_group)
            loss.backward()
            step_loss += float(loss.detach())
        self.optimizer.step()
        return step_loss

    def finish(self, images: Sequence[np.ndarray]) -> HeadCheck:
        """Keep the epoch that scored best on held-out defects (with ``patience``), then choose
        the decoder's scale and the fusion and record them in the recipe."""
        self.detector.eval()
        if self.best["proj"] is not None:
            self.detector.decoder.proj.load_state_dict(self.best["proj"])
            save_tensors(self.bundle, self.detector)
        head = check_head(self.detector, images, self.recipe.bit_depth, self.cfg.on_part)
        recipe = load_recipe(self.bundle)
        recipe.text_scale, recipe.fusion = head.text_scale, head.fusion
        save_recipe(self.bundle, recipe)
        return head


def _early_stop(
    detector: BatteryDetector, held_out: SyntheticDefectSet, best: dict, epoch: int, cfg
) -> bool:
    """Score the epoch on held-out defects, remember the best; True when ``patience`` epochs
    have passed without a better one."""
    auroc = held_out_auroc(detector, held_out)
    best["aurocs"].append(auroc)
    if best["auroc"] is None or auroc > best["auroc"]:
        best.update(epoch=epoch, auroc=auroc, proj=_proj_state(detector))
    best["stopped"] = epoch - best["epoch"] >= cfg.patience
    return best["stopped"]
