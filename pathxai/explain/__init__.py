"""Attribution methods by name (LRP composites from zennit, gradient methods) and faithfulness metrics.

Knows nothing of slides: it maps a batch of normalised image tensors to relevance maps.

>>> from pathxai.explain import Explainer
>>> with Explainer(model, "lrp") as explainer:          # doctest: +SKIP
...     result = explainer(batch)                       # relevance (N, H, W), probabilities (N, C)
"""

from pathxai.explain.explainer import Explainer, explain
from pathxai.explain.explanation import Explanation
from pathxai.explain.methods import METHODS, Method, method_names, register_method

__all__ = ["METHODS", "Explainer", "Explanation", "Method", "explain", "method_names", "register_method"]
