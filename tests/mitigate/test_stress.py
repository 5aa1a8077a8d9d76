"""The stress test can fail: a mitigation that does nothing keeps the shortcut and is caught."""

from __future__ import annotations

import numpy as np

from pathxai.mitigate.run import step_passed
from pathxai.mitigate.stress import artifact_stress, passes, relevance_ratio
from pathxai.mitigate.transplant import artifact_donors, fill_masked, paste
from tests.audit.plant import draw_pen
from tests.audit.synth import MPP, he_image


def _blue_share(img: np.ndarray) -> float:
    f = img.astype(float)
    return float(((f[..., 2] - f[..., 0]) > 80).mean())


def shortcut_model(images):
    """A 'model' that learned the pen: tumour probability rises with the blue ink on the image."""
    return np.asarray([1 / (1 + np.exp(-(60 * _blue_share(im) - 2))) for im in images])


def fixed_model(images):
    """A 'model' that ignores the pen entirely."""
    return np.asarray([0.2 + 0.001 * float(im.mean()) / 255 for im in images])


def _cohort():
    rng = np.random.default_rng(3)
    donors_src = [draw_pen(he_image(rng), rng, "blue", width=9)[0] for _ in range(4)]
    recipients = [he_image(rng) for _ in range(6)]
    return artifact_donors(donors_src, MPP, "pen:blue"), recipients


def test_do_nothing_mitigation_fails_the_stress_test():
    donors, recipients = _cohort()
    assert donors, "the detector must find the planted ink"
    before = artifact_stress(shortcut_model, recipients, donors, flagged_class=1)
    assert before.sensitivity > 0.2
    assert before.flip_rate > 0
    # the "mitigated" model is the same model: the stress test must fail it
    after = artifact_stress(shortcut_model, recipients, donors, flagged_class=1)
    assert not passes(before, after)
    assert step_passed({"stress": before.to_dict()}, {"stress": after.to_dict()}) is False
    # a model that no longer follows the ink passes
    fixed = artifact_stress(fixed_model, recipients, donors, flagged_class=1)
    assert abs(fixed.sensitivity) < 0.01
    assert passes(before, fixed)


def test_stress_direction_follows_the_marked_class():
    donors, recipients = _cohort()
    # ink marks the non-tumour class: following it lowers the tumour probability, so the shortcut
    # model's shift away from the marked class is negative
    res = artifact_stress(shortcut_model, recipients, donors, flagged_class=0)
    assert res.sensitivity < -0.2


def test_paste_and_relevance_ratio():
    donors, recipients = _cohort()
    out, mask = paste(recipients[0], donors[0])
    assert mask.any() and (out[mask] == donors[0].image[: out.shape[0], : out.shape[1]][mask]).all()
    assert (out[~mask] == recipients[0][~mask]).all()
    rel_on = np.where(mask, 1.0, 0.0)
    rel_flat = np.ones(mask.shape)
    assert abs(relevance_ratio([rel_on], [mask]) - 1 / mask.mean()) < 1e-9  # all relevance on the ink
    assert abs(relevance_ratio([rel_flat], [mask]) - 1.0) < 1e-9
    filled = fill_masked(out, mask)
    assert _blue_share(filled) < 0.2 * _blue_share(out)


def test_following_the_artifact_backwards_still_fails():
    """An over-corrected model that now moves against the artifact still depends on it."""
    donors, recipients = _cohort()
    before = artifact_stress(shortcut_model, recipients, donors, flagged_class=1)
    backwards = artifact_stress(shortcut_model, recipients, donors, flagged_class=0)
    assert backwards.sensitivity < 0
    assert not passes(before, backwards)
