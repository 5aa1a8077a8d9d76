"""The check registry and the one grading helper."""

import pytest

from pathxai.audit.findings import BiasFinding, Region, Thresholds
from pathxai.audit.grade import assign_ids, graded
from pathxai.audit.registry import CheckContext, check_names, get_check, register_check, run_checks
from tests.audit import synth

#: Every check of today's report.json, by registered name (families of parameterised names).
BUILTIN = {
    "stain.outliers",
    "stain.probe",
    "stain.sensitivity",
    "artifact.prevalence",
    "artifact.label_association",
    "artifact.relevance",
    "labels.annotation",
    "labels.background_relevance",
    "labels.candidates",
    "sampling.imbalance",
    "sampling.missing_cells",
    "sampling.patient_confounding",
    "sampling.site_confounding",
    "sampling.leakage",
    "sampling.unseen",
    "sampling.group_performance",
    "sampling.spray",
}


def test_builtin_checks_are_registered_by_report_name():
    names = check_names()
    assert set(names) >= BUILTIN
    assert len(names) == len(set(names))
    assert names[0] == "stain.outliers" and names.index("artifact.prevalence") < names.index("sampling.spray")
    assert check_names("pathxai.audit.sampling")[0] == "sampling.imbalance"
    assert "sampling.spray" not in check_names("pathxai.audit.sampling")  # lives in spray
    assert get_check("artifact.relevance").family == "class-correlated"
    # every registered name has a severity rule (parameterised names share their family's)
    th = Thresholds()
    for n in BUILTIN - {"stain.probe", "sampling.spray"}:
        th.rule(n)


def test_unknown_check_is_a_clear_error():
    with pytest.raises(KeyError, match=r"unknown audit check 'no\.such'.*sampling\.leakage"):
        get_check("no.such")


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):

        @register_check("sampling.leakage", family="sampling")
        def other(ctx):  # pragma: no cover - never registered
            return []


def test_run_checks_runs_the_named_checks_and_shares_results():
    import numpy as np

    rng = np.random.default_rng(0)
    its = synth.items([synth.he_image(rng) for _ in range(4)], [1, 0, 1, 0])
    ctx = CheckContext(its, Thresholds())
    fs = run_checks(ctx, ["sampling.imbalance", "artifact.prevalence"])
    assert [f.check for f in fs][:1] == ["sampling.imbalance"]
    assert {f.check for f in fs[1:]} == {
        f"artifact.prevalence:{k}"
        for k in ("pen:blue", "pen:green", "pen:red", "pen:black", "fold", "blur", "white_spot", "background")
    }
    calls = []
    assert ctx.memo("x", lambda: calls.append(1) or 5) == 5
    assert ctx.memo("x", lambda: calls.append(1) or 6) == 5 and calls == [1]
    assert run_checks(CheckContext([]), ["sampling.imbalance"]) == []


def test_graded_grades_gates_caps_and_writes_the_message():
    th = Thresholds()  # sampling.spray: low 0.6, medium 0.8, high 0.95
    f = graded(th, "sampling", "sampling.spray:site", "share", 0.9, lambda sev: f"sev={sev}", items=["a"])
    assert (f.severity, f.threshold, f.message, f.items) == ("medium", 0.8, "sev=medium", ("a",))
    assert graded(th, "sampling", "sampling.spray:site", "share", 0.99, "m").severity == "high"
    capped = graded(th, "sampling", "sampling.spray:patient", "share", 0.99, "m", cap="medium")
    assert (capped.severity, capped.threshold) == ("medium", 0.8)
    gated = graded(th, "sampling", "sampling.spray:site", "share", 0.99, "m", grade=False)
    assert (gated.severity, gated.threshold, gated.value) == ("info", None, 0.99)
    inf = graded(th, "sampling", "sampling.imbalance", "ratio", None, "m", grade_value=1e9)
    assert (inf.severity, inf.value) == ("high", None)
    r = Region("a", 0, 0, 1, 1, "x")
    assert graded(th, "dataset", "stain.outliers", "f", 0.0, "m", regions=[r], details={"k": 1}).regions == (
        r,
    )


def test_finding_ids_are_the_check_name_with_a_suffix_only_when_repeated():
    def f(check):
        return BiasFinding("dataset", check, "m", 1.0, None, "info")

    ids = [x.id for x in assign_ids([f("a"), f("b"), f("a")])]
    assert ids == ["a#1", "b", "a#2"]
    d = assign_ids([f("stain.outliers")])[0].to_dict()
    assert d["id"] == "stain.outliers" and d["check"] == "stain.outliers"
