"""Device mixing caught on a CPU: the accelerator is simulated by a torch function mode.

On a GPU, an op that mixes CUDA tensors with CPU tensors that are not scalars fails (indexing a
CPU tensor with CUDA masks, adding a CPU vector to a CUDA one, ...). Here every tensor counts as
on the "device" unless the mode saw it made on the host: by a factory function without a device
(torch.arange(n), torch.tensor(list)), by .cpu() or .to("cpu"), or by ops on host tensors only.
The model's weights, its inputs moved with .to(ACCEL), gradients and whatever derives from them
are on the device; tensor.device says ACCEL (cpu:0) for them, so that code creating tensors with
device=x.device creates them there. Any op mixing the two raises DeviceMix, also where CUDA
would copy host indices over by itself (a synchronous transfer each time): tensors are made on
the device of the data they meet. Copies of values (x[...] = host, x.copy_(host)) are allowed.
"""

import pytest
import torch
from conftest import gpt2, two_examples
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from peftsum.config import EvalConfig, TrainingConfig
from peftsum.data.batches import collate, collate_sources
from peftsum.evaluation import greedy
from peftsum.evaluation.generate import cache_owner, generate_and_score
from peftsum.methods import from_config
from peftsum.training.loop import Trainer
from peftsum.training.loss import summary_nll

ACCEL = torch.device("cpu", 0)  # the simulated accelerator: a device that is not plain "cpu"
HOST = torch.device("cpu")


class DeviceMix(RuntimeError):
    pass


def _as_device(value) -> torch.device | None:
    return torch.device(value) if isinstance(value, str | torch.device) else None


class SimulatedDevice(TorchFunctionMode):
    """Tracks which tensors the code made on the host and raises on an op that meets host
    tensors (0-dim ones excepted, as CUDA takes CPU scalars) and device tensors together."""

    def __init__(self):
        super().__init__()
        self.host = WeakIdKeyDictionary()  # the tensors made on the host; all others: device

    def on_device(self, t: torch.Tensor) -> bool:
        return t not in self.host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__self__", None) is torch.Tensor.device:  # the property's getter
            return ACCEL if self.on_device(args[0]) else HOST
        name = getattr(func, "__name__", "")
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        # A copy between devices is legal: x[...] = host_values, x.copy_(host); the indices
        # of an assignment must still be on the device of the tensor they index.
        met = {"__setitem__": [t for t in tree_leaves(args[:2]) if isinstance(t, torch.Tensor)],
               "copy_": []}.get(name, tensors)
        on = [t for t in met if self.on_device(t)]
        off = [t for t in met if not self.on_device(t) and t.dim() > 0]
        if on and off:
            raise DeviceMix(f"{name} mixes host tensors {[tuple(t.shape) for t in off]} with "
                            f"device tensors {[tuple(t.shape) for t in on]}")
        out = func(*args, **kwargs)
        self._place(out, args, self._destination(name, args, kwargs),
                    any(self.on_device(t) for t in tensors))
        return out

    def _destination(self, name: str, args, kwargs) -> torch.device | None:
        """Where the call puts its result when it says so: .cpu(), .to(...), device=..."""
        if name == "cpu":
            return HOST
        if name == "to":
            for value in (*args[1:], kwargs.get("device")):
                if isinstance(value, torch.Tensor):
                    return ACCEL if self.on_device(value) else HOST
                if (dev := _as_device(value)) is not None:
                    return dev
        return _as_device(kwargs.get("device"))

    def _place(self, out, args, destination: torch.device | None, meets_device: bool) -> None:
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if args and any(t is args[0] for t in outputs):
            return  # in place: the tensor stays where it was
        on_device = destination == ACCEL if destination is not None else meets_device
        for t in outputs:
            if on_device:
                self.host.pop(t, None)
            else:
                self.host[t] = True


def test_the_simulation_catches_what_cuda_refuses():
    with SimulatedDevice():
        rows = torch.arange(4)
        ended = torch.zeros(4, dtype=torch.bool).to(ACCEL)
        with pytest.raises(DeviceMix, match="__getitem__"):
            rows[ended]
        with pytest.raises(DeviceMix, match="add"):
            torch.ones(4, device=ended.device) + torch.ones(4)
        assert torch.arange(4, device=ended.device)[ended].shape == (0,)
        assert (torch.ones(4).to(ACCEL) + torch.tensor(1.0)).shape == (4,)  # a host scalar is fine
        values = torch.zeros(4).to(ACCEL)
        values[ended] = torch.ones(0)  # host values into device rows: a copy, legal
        with pytest.raises(DeviceMix, match="__setitem__"):
            values[torch.zeros(4, dtype=torch.bool)] = 1.0  # host indices: made on the wrong side


def tiny():
    return gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=128)


ARTICLES = ["The cat sat on the mat and looked at the birds in the garden.", "Hello there.",
            "Stocks rose sharply on Monday after the central bank cut rates.", "A short one."]


def _sources(tokenizer) -> dict[str, torch.Tensor]:
    ids = [tokenizer(a + "\nTL;DR:")["input_ids"] for a in ARTICLES]
    return collate_sources([{"input_ids": i, "source_len": len(i)} for i in ids],
                           tokenizer.pad_token_id)


def _lora(tokenizer):
    model, _ = from_config("m", {"kind": "lora", "r": 4}).wrap(tiny(), tokenizer)
    return model.eval()


@torch.no_grad()
def test_greedy_decoding_keeps_its_rows_on_the_device_when_rows_end(tokenizer):
    model, sources = _lora(tokenizer), _sources(tokenizer)
    start, cache = greedy.prefill_grouped(model, sources, 10, 50256, None)
    free = greedy.decode(cache_owner(model), cache, start, 10, -1, 50256, 3)
    eos = free[1][3]  # a token that ends one row after a few steps, before the others
    model.to(ACCEL)
    with SimulatedDevice():
        on_device = {k: v.to(ACCEL) for k, v in sources.items()}
        start, cache = greedy.prefill_grouped(model, on_device, 10, 50256, None)
        ours = greedy.decode(cache_owner(model), cache, start, 10, eos, 50256, 3)
    assert len(ours[1]) < 10 and eos in ours[1]  # that row ended and left the batch


def test_the_evaluation_generates_and_scores_on_the_device(tokenizer):
    model = _lora(tokenizer).to(ACCEL)
    examples = two_examples(tokenizer)
    cfg = EvalConfig.from_dict({"batch_size": 2, "max_new_tokens": 6})
    with SimulatedDevice():
        generation = generate_and_score(model, tokenizer, examples, cfg, ACCEL)
    assert len(generation.outputs) == 2 and generation.loss_sums[1] > 0


def test_the_loss_pass_and_its_backward_stay_on_the_device(tokenizer):
    model = _lora(tokenizer).train().to(ACCEL)
    with SimulatedDevice():
        batch = {k: v.to(ACCEL) for k, v in collate(two_examples(tokenizer), 50256).items()}
        nll, count = summary_nll(model, batch)
        (nll / count).backward()
    assert count > 0


DEMO_KINDS = [{"kind": "prompt_tuning", "n_tokens": 4}, {"kind": "lora", "r": 4, "dropout": 0.1},
              {"kind": "last_layers", "n_blocks": 1, "final_norm": True}, {"kind": "full"},
              {"kind": "ia3"}, {"kind": "prefix_tuning", "num_virtual_tokens": 4},
              {"kind": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16},
              {"kind": "bitfit"}, {"kind": "adalora", "init_r": 4, "target_r": 2, "total_step": 4}]


def _trainer(tokenizer, spec: dict, folder, max_steps: int) -> Trainer:
    examples = two_examples(tokenizer) * 4
    cfg = TrainingConfig.from_dict({"batch_size": 2, "grad_accum": 2, "max_steps": max_steps,
                                    "epochs": 2, "log_every": 1, "eval_every": 1,
                                    "checkpoint_every": 1, "patience": None})
    method = from_config("m", {**spec, "lr": 1e-3})
    model, _ = method.wrap(tiny(), tokenizer)
    return Trainer(model, tokenizer, method, cfg, 0, examples, examples[:2], ACCEL, folder, "fp")


@pytest.mark.parametrize("spec", DEMO_KINDS, ids=[s["kind"] for s in DEMO_KINDS])
def test_training_checkpointing_and_resuming_stay_on_the_device(tokenizer, tmp_path, spec):
    """Two steps with validation and logging, a checkpoint after the first; then a new trainer
    resumes from that checkpoint (weights, optimizer, scheduler, RNG) and takes two more."""
    first = _trainer(tokenizer, spec, tmp_path, 2)  # made on the host, then placed on ACCEL
    with SimulatedDevice():
        assert first.fit()["step"] == 2
    resumed = _trainer(tokenizer, spec, tmp_path, 3)
    with SimulatedDevice():
        assert resumed.fit()["step"] == 3
    assert resumed.rows[0]["step"] == 1  # the first steps' rows came from the checkpoint
