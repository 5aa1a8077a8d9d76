from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pathxai.errors import ModelError
from pathxai.manifest import read_manifest
from pathxai.model.datasets import patches_from_manifest
from pathxai.model.train import CKPT_STATE, TrainConfig, train_model, train_step

TINY = {"widths": [8, 16, 16, 32, 32]}


@pytest.fixture(scope="module")
def glas_patches(tiny_glas_manifest: Path, glas_dir: Path):
    m = read_manifest(tiny_glas_manifest)
    train = [r for r in m.records if r.split == "train"]
    ds = patches_from_manifest(train, glas_dir, 2.48, 48, 48, min_tissue=0.3, progress=False)
    keep = [i for i in range(len(ds))][:: max(1, len(ds) // 32)][:32]
    ds.patches = [ds.patches[i] for i in keep]
    return ds


def _cfg(**kw) -> TrainConfig:
    base = dict(
        arch="compact_cnn", arch_kwargs=TINY, epochs=6, batch_size=16, lr=3e-3, warmup_steps=1, seed=0
    )
    base.update(kw)
    return TrainConfig(**base)


class _Stop(Exception):
    pass


def _stop_after_1(epoch: int, stats: dict) -> None:
    if epoch == 1:
        raise _Stop


def test_loss_decreases_on_real_glas_patches(glas_patches) -> None:
    assert set(glas_patches.patch_labels.tolist()) == {0, 1}
    res = train_model(glas_patches, _cfg(), progress=False)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.9, losses
    assert not res.model.training


def test_training_is_deterministic_and_resume_reproduces_it(glas_patches, tmp_path: Path) -> None:
    full = train_model(glas_patches, _cfg(epochs=2), checkpoint_dir=tmp_path / "a", progress=False)
    again = train_model(glas_patches, _cfg(epochs=2), progress=False)
    # interrupted after one epoch, then resumed
    with pytest.raises(_Stop):
        train_model(
            glas_patches,
            _cfg(epochs=2),
            checkpoint_dir=tmp_path / "b",
            progress=False,
            on_epoch=_stop_after_1,
        )
    assert (tmp_path / "b" / CKPT_STATE).is_file()
    resumed = train_model(
        glas_patches, _cfg(epochs=2), checkpoint_dir=tmp_path / "b", resume=True, progress=False
    )
    assert resumed.resumed_from_epoch == 1
    sa, sb, sc = full.model.state_dict(), again.model.state_dict(), resumed.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
        assert torch.equal(sa[k], sc[k]), k
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    # checkpoints are safetensors + JSON only, never pickles
    for f in (tmp_path / "b").iterdir():
        assert f.suffix in (".safetensors", ".json"), f.name
        assert not f.read_bytes().startswith(b"\x80")


def test_resume_with_other_settings_is_refused(glas_patches, tmp_path: Path) -> None:
    train_model(glas_patches, _cfg(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ModelError, match="different training settings"):
        train_model(
            glas_patches, _cfg(epochs=1, lr=1e-2), checkpoint_dir=tmp_path, resume=True, progress=False
        )


def test_tampered_checkpoint_is_refused(glas_patches, tmp_path: Path) -> None:
    with pytest.raises(_Stop):
        train_model(
            glas_patches, _cfg(epochs=2), checkpoint_dir=tmp_path, progress=False, on_epoch=_stop_after_1
        )
    f = tmp_path / "ckpt_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        train_model(glas_patches, _cfg(epochs=2), checkpoint_dir=tmp_path, resume=True, progress=False)


def test_bad_arguments() -> None:
    from pathxai.model.datasets import PatchDataset

    ds = PatchDataset([np.zeros((32, 32, 3), np.uint8)], [0], size=32, stride=32)
    with pytest.raises(ValueError):
        train_model(ds, _cfg(), progress=False)


def test_train_step_updates_the_model_and_refuses_a_non_finite_loss() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    items = [(torch.randn(3, 2, 2), i % 2) for i in range(6)]
    before = [p.detach().clone() for p in model.parameters()]
    loss, correct = train_step(model, opt, torch.nn.CrossEntropyLoss(), items, 0.5, ModelError)
    assert np.isfinite(loss) and 0 <= correct <= len(items)
    assert opt.param_groups[0]["lr"] == 0.5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    def nan_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")

    after = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ModelError, match="diverged at nan"):
        train_step(model, opt, nan_loss, items, 0.5, lambda v: ModelError(f"diverged at {v}"))
    assert all(torch.equal(a, b) for a, b in zip(after, model.parameters(), strict=True))
