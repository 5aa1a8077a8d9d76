"""Acting on an audit finding: correct or fine-tune the model, and prove the shortcut is gone.

* :mod:`~pathxai.mitigate.select` — which findings of ``report.json`` to act on, and their kind;
* :mod:`~pathxai.mitigate.transplant` — the audit's evidence moved onto the other class (pen masks,
  stain statistics);
* :mod:`~pathxai.mitigate.stress` — the shortcut stress test, relevance on the artifact, clean AUC;
* :mod:`~pathxai.mitigate.cav` — a concept direction in a layer from paired artifact/clean activations;
* :mod:`~pathxai.mitigate.channels` — conv channels ranked by the LRP relevance the artifact adds, and
  their removal by channel surgery (method ``prune``);
* :mod:`~pathxai.mitigate.finetune` — the fine-tuning loop with the methods' losses and data changes;
* :mod:`~pathxai.mitigate.methods` — the methods by name (``clarc-p``, ``clarc-a``, ``rr-clarc``,
  ``mask``, ``stain``, ``rebalance``, ``prune``) and the automatic choice per kind of finding;
* :mod:`~pathxai.mitigate.relabel` — label findings become a list a person confirms;
* :mod:`~pathxai.mitigate.report` — ``mitigation.json`` and ``mitigation.html``.
"""

from __future__ import annotations

__all__ = ["METHODS"]

#: Method names accepted by ``pathxai mitigate --method``.
METHODS = ("auto", "mask", "clarc-p", "clarc-a", "rr-clarc", "stain", "rebalance", "prune")
