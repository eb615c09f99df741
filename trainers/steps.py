"""The optimisation steps of one epoch: two views, forward, objective, backward, EMA update.

Per step: sample the batch indices from the data-order generator, augment the uint8 batch on the
trial's device (per-sample parameters, augmentation generator; the view pair the objective declares),
run the student on both views and the EMA teacher where the objective declares one, evaluate the
objective, and only when the loss and every gradient are finite take the optimiser step and update
the teacher. A non-finite loss or gradient ends the epoch at once and marks it diverged; parameters
are never touched by it.

A method's own recipe (SwAV's prototype freezing, renormalisation and queue, DeepCluster-v2's
k-means targets) lives in its objective: :class:`TrainingStep` calls the objective's hooks at fixed
points (``on_epoch_start``; per step ``before_forward``, ``add_inputs``, ``after_backward``; see
:class:`er_core.objectives.Objective`) and provides what they read (:class:`~er_core.objectives.TrainingContext`).
Nothing here depends on which method is trained.

With several workers (``state.world``) ``batch_size`` is the global batch: every worker draws the
same data order, takes its contiguous shard of each batch, augments and forwards it, and the
objective and its hooks receive the global batch (:mod:`trainers.distributed`: gathered outputs,
global batch indices, averaged gradients), so they compute exactly what one worker with the whole
batch would.

A streamed training split (``bundle.train_files``) is read by the trial's loader processes
(:mod:`er_core.data.stream`) in the order the steps index it: the epoch's shards
(:class:`~er_core.data.stream.ShardedBatchSampler` of the same permutation), or the chunks of
:meth:`TrainingStep.embed_training_set`. Each step checks that the images it receives are the rows it
asked for, so streamed and in-memory training take identical steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from er_core.collapse import grad_is_finite
from er_core.config import TrialConfig
from er_core.data import DatasetBundle
from er_core.data.augment import make_augmenter, use_gray_preset
from er_core.data.stream import FileBatches, ShardedBatchSampler
from er_core.models import SSLNetwork, ema_momentum
from er_core.models.heads import NetworkOutput
from er_core.objectives import ObjectiveInputs
from trainers.distributed import average_gradients, broadcast_state, gather, gather_uneven
from trainers.optim import learning_rate, scaled_lr, set_learning_rate
from trainers.state import TrialState

EMBED_CHUNK = 512


@dataclass
class EpochOutcome:
    mean_loss: float
    images: int
    lr: float
    ema: float
    diverged: bool = False
    divergence_value: float = float("nan")


class TrainingStep:
    """Runs the training steps of an epoch for one :class:`TrialState`; the objective's hooks'
    :class:`~er_core.objectives.TrainingContext`."""

    def __init__(self, state: TrialState, data: DatasetBundle) -> None:
        self.state = state
        self.data = data
        self.world = state.world
        config = state.config
        self.augment = make_augmenter(state.objective.views, data.mean, data.std,
                                      grayscale=use_gray_preset(config.augment, data.grayscale))
        self.num_train = data.num_train
        # a streamed split's loader, and the (rows, images) of the pass in progress
        self._files = FileBatches(data.train_files, workers=config.loader_workers) if data.streaming else None
        self._stream: Iterator[tuple[list[int], torch.Tensor]] | None = None
        self.steps_per_epoch = self.num_train // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = self.steps_per_epoch * min(config.warmup_epochs, config.epochs)
        self.peak_lr = scaled_lr(config.lr, config.batch_size)
        self.autocast = state.device.type == "cuda"
        self._memory_format = torch.channels_last if state.channels_last else torch.contiguous_format
        self._pin = state.device.type == "cuda"
        broadcast_state([state.net, state.teacher, state.objective], self.world)

    # what the objective's hooks read (TrainingContext)
    @property
    def config(self) -> TrialConfig:
        return self.state.config

    @property
    def net(self) -> SSLNetwork:
        return self.state.net

    @property
    def device(self) -> torch.device:
        return self.state.device

    @property
    def step(self) -> int:
        return self.state.step

    def current_ema(self) -> float:
        config = self.state.config
        if self.state.teacher is None:
            return 0.0
        return ema_momentum(config.ema, self.state.step, self.total_steps, config.ema_schedule)

    def run_epoch(self, epoch: int, writer) -> EpochOutcome:
        state, config = self.state, self.state.config
        state.net.train()
        state.objective.train()
        state.objective.on_epoch_start(self, epoch)
        # a recipe's per-epoch state (k-means targets and centroids) must be one state on every worker
        broadcast_state([state.net, state.objective], self.world)
        order = torch.randperm(self.num_train, generator=state.data_generator)
        self._read(ShardedBatchSampler(order, config.batch_size, rank=self.world.rank, world_size=self.world.size))
        loss_sum, images, lr = torch.zeros((), dtype=torch.float64), 0, 0.0
        for index in range(self.steps_per_epoch):
            batch_indices = order[index * config.batch_size:(index + 1) * config.batch_size]
            lr = learning_rate(state.step, self.total_steps, self.warmup_steps, self.peak_lr)
            set_learning_rate(state.optimizer, lr)
            loss = self._step(batch_indices)
            if not math.isfinite(loss) or not grad_is_finite(state.net):
                state.optimizer.zero_grad(set_to_none=True)
                done = max(index, 1)
                return EpochOutcome(mean_loss=float(loss_sum) / done, images=images, lr=lr,
                                    ema=self.current_ema(), diverged=True, divergence_value=loss)
            state.optimizer.step()
            if state.teacher is not None:
                state.teacher.update(state.net, self.current_ema())
            state.step += 1
            loss_sum += loss
            images += batch_indices.numel()
            if state.step % config.log_every_n_steps == 0:
                writer.step_scalars(state.step, loss=loss, lr=lr)
        return EpochOutcome(mean_loss=float(loss_sum) / max(1, self.steps_per_epoch), images=images,
                            lr=lr, ema=self.current_ema())

    def close(self) -> None:
        """Stop the loader processes of a streamed training split (nothing to do in memory)."""
        if self._files is not None:
            self._files.close()
        self._stream = None

    def _read(self, plan: Iterable[Sequence[int]]) -> None:
        """Start reading a streamed split's rows ``plan`` (one list per later :meth:`views` call), in order."""
        if self._files is not None:
            self._stream = zip(iter(plan), self._files.batches(plan))

    def _images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 training images ``indices``: rows of the bundle's tensor, or the streamed pass's next batch."""
        if self._files is None:
            return self.data.train_images[indices]
        rows, images = next(self._stream) if self._stream is not None else (None, None)
        if rows is None or rows != indices.tolist():
            raise RuntimeError(f"the streamed pass is out of step: it holds rows {str(rows)[:80]}, the trainer asked "
                               f"for {str(indices.tolist())[:80]}")
        return images

    def views(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two augmented views of training images ``indices`` (this worker's augmentation stream)."""
        batch = self._images(indices)
        if self._pin:
            batch = batch.pin_memory()
        batch = batch.to(self.state.device, non_blocking=True)
        return self.augment(batch, self.state.augment_generator)

    def _step(self, batch_indices: torch.Tensor) -> float:
        """Forward + backward of the global batch ``batch_indices`` (this worker forwards its shard);
        returns the loss (gradients left in place, averaged over the workers)."""
        state = self.state
        device = state.device
        objective = state.objective
        indices = batch_indices.to(device)
        view1, view2 = self.views(self.world.shard(batch_indices))
        view1 = view1.contiguous(memory_format=self._memory_format)
        view2 = view2.contiguous(memory_format=self._memory_format)
        state.optimizer.zero_grad(set_to_none=True)
        objective.before_forward(self)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out1, out2 = state.net(view1), state.net(view2)
            teacher1 = teacher2 = None
            if state.teacher is not None:
                with torch.no_grad():
                    teacher1, teacher2 = state.teacher(view1), state.teacher(view2)
        world = self.world
        inputs = ObjectiveInputs(
            z1=gather(out1.z.float(), world), z2=gather(out2.z.float(), world),
            p1=gather(_float(out1.p), world), p2=gather(_float(out2.p), world),
            s1=gather(_float(out1.scores), world), s2=gather(_float(out2.scores), world),
            t1=gather(_float(teacher1.z if teacher1 is not None else None), world),
            t2=gather(_float(teacher2.z if teacher2 is not None else None), world),
            ts1=gather(_float(teacher1.scores if teacher1 is not None else None), world),
            ts2=gather(_float(teacher2.scores if teacher2 is not None else None), world),
        )
        objective.add_inputs(self, inputs, indices)
        output = objective(inputs)
        loss = output.loss
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        average_gradients([state.net, objective], world)
        outputs = (out1, out2) if not world.distributed else (_global_output(inputs, 1), _global_output(inputs, 2))
        objective.after_backward(self, outputs, indices)
        return value

    @torch.no_grad()
    def embed_training_set(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(indices, z1, z2)`` per chunk of the training set, in order: the student's float32
        projections of two augmented views (augmentation generator), in eval mode."""
        state, world = self.state, self.world
        was_training = state.net.training
        state.net.eval()
        step = EMBED_CHUNK * world.size
        # each worker embeds its share of every chunk (nothing of a last chunk shorter than the world)
        shares = [torch.arange(start, min(start + step, self.num_train))[world.rank::world.size]
                  for start in range(0, self.num_train, step)]
        self._read([indices.tolist() for indices in shares if indices.numel()])
        try:
            for indices in shares:
                z1 = z2 = torch.zeros(0, state.config.projector_dim, device=state.device)
                if indices.numel():
                    view1, view2 = self.views(indices)
                    with torch.autocast(device_type=state.device.type, dtype=torch.bfloat16,
                                        enabled=self.autocast):
                        z1, z2 = state.net(view1).z.float(), state.net(view2).z.float()
                indices = indices.to(state.device)
                yield gather_uneven(indices, world), gather_uneven(z1, world), gather_uneven(z2, world)
        finally:
            state.net.train(was_training)
            self._stream = None


def _global_output(inputs: ObjectiveInputs, view: int) -> NetworkOutput:
    """A view's student outputs over the global batch (detached) for the recipe hooks; the backbone
    features are not gathered (no hook reads them)."""
    def detached(name: str) -> torch.Tensor | None:
        value = getattr(inputs, f"{name}{view}")
        return value.detach() if value is not None else None

    return NetworkOutput(features=None, z=detached("z"), p=detached("p"), scores=detached("s"))


def _float(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return tensor.float() if tensor is not None else None
