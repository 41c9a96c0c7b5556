"""Several training runs through one loaded model: every round is one device batch of several runs' micro-batches.

    group = TrainingGroup(components, precision, memory=MemoryBudget(20 * 2**30))
    for session in sessions:
        session.start(events=..., should_stop=...)
        group.add(session)
    while group.sessions:
        for session, result in group.round(): ...          # a RunOutcome, or the exception that ended the run

A round, top to bottom:
    stop checks     a run at an optimizer-step boundary is asked whether to stop (pause, cancel, shutdown)
    packing         runs in the order they were last served, while their micro-batches fit the memory budget
    draw            each chosen run draws its micro-batch with its own cursor, prompt sampler and generator
    text encoder    every run's token embeddings, with its own vectors spliced in, in one CLIP call  [sum B*C, 77, D]
                    per text encoder (SDXL: two, and the pooled text)
    UNet            one call per conditioning length over the runs' noisy latents              [sum B, 4, h, w]
                    (SDXL: with the runs' time ids)
    loss            the sum over runs of (micro-batch mean loss / the run's accumulation): no term depends on
                    another run's vectors, so each run's gradient is exactly the gradient it would get alone
    backward        once
    per run         its accumulation count; at its step's end its clip, AdamW, reports and savepoints
A run joins at any round and leaves when its outcome is known (done, paused, cancelled, failed); runs of other
models, precisions or sizes belong to other groups. Alone, a run is a group of one: `TrainingSession.run` is this
code, so a run trained with others follows the same arithmetic as one trained alone (to float rounding of the
batched kernels).

Compilation: `compile_unet=True` runs the UNet through `torch.compile` (one compiled module per loaded UNet, shared
by every group on it; dynamo's automatic dynamic shapes cover the batch sizes that packing produces, and a graph it
cannot compile runs eager). It is meant for CUDA, where it fuses the elementwise kernels between the matmuls.

Memory: with a budget, the first round serves one run and measures the bytes a sample keeps for the backward
(saved-tensor hooks, parameters and buffers excluded); later rounds pack up to budget / (that x headroom) samples.
A CUDA out-of-memory error in a shared round restores the runs' gradients, lowers the cap below that round's
samples and serves the same drawn micro-batches again in smaller rounds; a run alone fails with the engine's advice.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from services.common.prompts.prompt_encoder import Conditioning, encode_together

if TYPE_CHECKING:
    from services.trainer.engine.events import RunOutcome
    from services.trainer.engine.loop import MicroBatch, TrainingSession
    from services.trainer.engine.precision import Precision

__all__ = ["MemoryBudget", "RoundReport", "TrainingGroup", "compiled", "group_key"]

log = logging.getLogger(__name__)

Finished = tuple["TrainingSession", "RunOutcome | BaseException"]

_COMPILED: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()


def compiled(unet: torch.nn.Module) -> Any:
    """The UNet through torch.compile, once per module; graphs dynamo cannot compile fall back to eager."""
    if unet not in _COMPILED:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        _COMPILED[unet] = torch.compile(unet)
    return _COMPILED[unet]


@dataclass(frozen=True)
class MemoryBudget:
    """Device memory the shared batch's activations may use, beyond the loaded model."""

    bytes: int
    headroom: float = 1.5  # peak over saved activations: the forward's transients and the backward's workspaces

    def samples(self, per_sample_bytes: float) -> int:
        return max(1, int(self.bytes / (per_sample_bytes * self.headroom)))


@dataclass(frozen=True)
class RoundReport:
    """What one device batch held: for the batch occupancy and jobs-per-batch metrics."""

    runs: int
    samples: int
    capacity: int | None  # samples the budget allows (None: no budget)
    waiting: int  # runs in the group that this round did not serve


def group_key(session: TrainingSession) -> tuple[int, int, int, str]:
    """Runs share a device batch when they share the loaded model, the latent size and the precision."""
    return (id(session.components), session.spec.width, session.spec.height, session.precision.name)


@dataclass
class _Member:
    session: TrainingSession
    served: int = -1  # the last round that served it
    pending: MicroBatch | None = None  # drawn, not yet trained (kept across a shared out-of-memory retry)


class TrainingGroup:
    def __init__(
        self,
        components: Any,
        precision: Precision,
        *,
        memory: MemoryBudget | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        compile_unet: bool = False,
    ) -> None:
        self.components = components
        self._unet = compiled(components.unet) if compile_unet else components.unet
        self.precision = precision
        self.memory = memory
        self._on_round = on_round
        self._members: list[_Member] = []
        self._rounds = 0
        self._per_sample_bytes: float | None = None
        self._cap_after_oom: int | None = None

    @property
    def sessions(self) -> list[TrainingSession]:
        return [member.session for member in self._members]

    @property
    def capacity(self) -> int | None:
        """Samples one device batch may hold now (None: no budget, or not measured yet)."""
        caps = []
        if self.memory is not None and self._per_sample_bytes is not None:
            caps.append(self.memory.samples(self._per_sample_bytes))
        if self._cap_after_oom is not None:
            caps.append(self._cap_after_oom)
        return min(caps) if caps else None

    def add(self, session: TrainingSession) -> None:
        """A started session joins; it is served from the next round."""
        if session.components is not self.components or session.precision.name != self.precision.name:
            raise ValueError("a session joins the group of its own loaded model and precision")
        if not session.running:
            raise ValueError("start the session (session.start(...)) before adding it to a group")
        self._members.append(_Member(session))

    def run_alone(self, session: TrainingSession) -> RunOutcome:
        """Rounds until the one session's run ends: its outcome, or its exception raised."""
        self.add(session)
        while True:
            for _, result in self.round():
                if isinstance(result, BaseException):
                    raise result
                return result

    # ------------------------------------------------------------------------------------------------------------
    def round(self) -> list[Finished]:
        """One device batch: the runs that ended in this round, each with its outcome or exception."""
        finished: list[Finished] = []
        for member in list(self._members):
            if member.pending is None and member.session.at_step_start:
                self._settle(member, finished, member.session.poll_stop)
        chosen = self._pack()
        if not chosen:
            return finished
        self._rounds += 1
        for member in chosen:
            member.served = self._rounds
            if member.pending is None:
                self._settle(member, finished, lambda m=member: self._draw(m))
        chosen = [member for member in chosen if member.pending is not None]
        if not chosen:
            return finished
        saved = [
            tuple(None if vectors.grad is None else vectors.grad.clone() for vectors in member.session.trained)
            for member in chosen
        ]
        try:
            with self._measuring(chosen):
                losses = self._forward_backward(chosen)
        except torch.OutOfMemoryError:
            self._out_of_memory(chosen, saved, finished)
            return finished
        except Exception as error:  # a fault of the shared step: every run in it ends with it
            log.exception("shared training step failed for %d run(s)", len(chosen))
            for member in chosen:
                self._leave(member, error, finished)
            return finished
        if self._on_round is not None:
            waiting = len(self._members) - len(chosen)
            samples = sum(member.pending.samples for member in chosen)
            self._on_round(RoundReport(len(chosen), samples, self.capacity, waiting))
        for member, loss in zip(chosen, losses, strict=True):
            member.pending = None
            self._settle(member, finished, lambda m=member, value=loss: m.session.micro_batch_done(value))
        return finished

    def _draw(self, member: _Member) -> None:
        member.pending = member.session.draw()

    def _pack(self) -> list[_Member]:
        """Longest-waiting first, within the budget; the first run is always served (alone if it must be)."""
        order = sorted(self._members, key=lambda member: member.served)
        if self.memory is not None and self._per_sample_bytes is None:
            return order[:1]  # measure what one sample costs before sharing
        cap = self.capacity
        chosen, samples = [], 0
        for member in order:
            size = member.session.plan.batch_size
            if chosen and cap is not None and samples + size > cap:
                continue
            chosen.append(member)
            samples += size
        return chosen

    def _forward_backward(self, chosen: list[_Member]) -> list[torch.Tensor]:
        batches = [member.pending for member in chosen]
        sessions = [member.session for member in chosen]
        unet, dtype = self._unet, self.components.unet.dtype
        with self.precision.autocast():
            conds = encode_together(
                [(s.prompt_encoder, b.tokens, s.trained) for s, b in zip(sessions, batches, strict=True)]
            )  # each hidden [B_i, C_i*77, D]
            preds: list[torch.Tensor | None] = [None] * len(chosen)
            for length in sorted({cond.hidden.shape[1] for cond in conds}):  # one UNet call per conditioning length
                part = [i for i, cond in enumerate(conds) if cond.hidden.shape[1] == length]
                noisy = torch.cat([batches[i].noised.noisy for i in part])  # [sum B, 4, h, w]
                timesteps = torch.cat([batches[i].noised.timesteps for i in part])  # [sum B]
                joined = Conditioning.cat([conds[i] for i in part])  # [sum B, L, D]
                cond = Conditioning(joined.hidden.to(dtype), None if joined.pooled is None else joined.pooled.to(dtype))
                ids = None if batches[part[0]].time_ids is None else torch.cat([batches[i].time_ids for i in part])
                pred = unet(noisy, timesteps, **cond.unet_kwargs(ids)).sample
                for i, piece in zip(part, pred.split([batches[i].samples for i in part]), strict=True):
                    preds[i] = piece
        losses = [s.micro_batch_loss(b, p) for s, b, p in zip(sessions, batches, preds, strict=True)]
        total = sum(s.backward_term(loss) for s, loss in zip(sessions, losses, strict=True))
        total.backward()
        return losses

    def _out_of_memory(self, chosen: list[_Member], saved: list[Any], finished: list[Finished]) -> None:
        for member, grads in zip(chosen, saved, strict=True):
            for vectors, grad in zip(member.session.trained, grads, strict=True):
                vectors.grad = grad
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(chosen) == 1:
            self._leave(chosen[0], chosen[0].session.out_of_memory(), finished)
            return
        samples = sum(member.pending.samples for member in chosen)
        self._cap_after_oom = max(1, min(samples - 1, samples * 3 // 4))  # a quarter less per failure
        log.warning(
            "out of memory with %d samples from %d runs; batches now hold at most %d",
            samples,
            len(chosen),
            self._cap_after_oom,
        )

    @contextmanager
    def _measuring(self, chosen: list[_Member]) -> Iterator[None]:
        """In the first budgeted round: the activation bytes a sample keeps for the backward."""
        if self.memory is None or self._per_sample_bytes is not None:
            yield
            return
        frozen = {
            tensor.untyped_storage().data_ptr()
            for module in (self.components.unet, *self.components.text_encoders)
            for tensor in (*module.parameters(), *module.buffers())
        }
        seen: set[int] = set()
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer not in frozen and pointer not in seen:
                seen.add(pointer)
                total += storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield
        samples = sum(member.pending.samples for member in chosen)
        self._per_sample_bytes = max(total, 1) / max(samples, 1)
        log.info(
            "training activations: %.1f MiB per sample; %d samples per device batch fit the budget",
            self._per_sample_bytes / 2**20,
            self.capacity or 0,
        )

    def _settle(self, member: _Member, finished: list[Finished], action: Callable[[], Any]) -> None:
        """Run one of the run's own steps; an outcome or an exception ends the run and takes it out of the group."""
        try:
            outcome = action()
        except torch.OutOfMemoryError:
            self._leave(member, member.session.out_of_memory(), finished)
            return
        except Exception as error:
            self._leave(member, error, finished)
            return
        if outcome is not None:
            self._leave(member, outcome, finished)

    def _leave(self, member: _Member, result: Any, finished: list[Finished]) -> None:
        if member in self._members:
            self._members.remove(member)
            finished.append((member.session, result))
