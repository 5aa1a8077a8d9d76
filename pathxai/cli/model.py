"""``pathxai model import`` (a model trained elsewhere into a pathxai model folder) and ``model calibrate``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from pathxai.cli._common import add_quiet, command, pick, positive_float, positive_int


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}")
    return values  # type: ignore[return-value]


def _classes(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(","))
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected at least two comma-separated class names, got {text!r}")
    return names


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--arch-kwargs is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--arch-kwargs must be a JSON object, e.g. '{\"drop_rate\": 0.1}'")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``model`` command and its ``import`` sub-command."""
    p = sub.add_parser("model", help="manage models (import one trained elsewhere)")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    imp = command(
        msub,
        run_import,
        "import",
        help="import torchvision/timm/your own weights as a pathxai model folder",
        description="Weights: .safetensors, torch.save(state_dict) .pt/.pth (read with weights_only=True) "
        "or a checkpoint dict holding 'state_dict'; 'module.'/'model.' prefixes are stripped.",
    )
    imp.add_argument(
        "--arch", required=True, help="torchvision:NAME, timm:NAME or python:package.module:factory"
    )
    imp.add_argument("--weights", required=True, type=Path, help="the weights file")
    imp.add_argument(
        "--head-weights",
        type=Path,
        default=None,
        help="nn.Linear state dict (weight, bias) on the backbone's pooled features",
    )
    imp.add_argument("--classes", required=True, type=_classes, help="class names by logit index, A,B[,...]")
    imp.add_argument(
        "--tumour-class", default=None, help="the tumour class (default: the class named tumour/tumor)"
    )
    imp.add_argument("--mpp", required=True, type=positive_float, help="µm/px the model was trained at")
    imp.add_argument("--size", required=True, type=positive_int, help="patch side in pixels")
    imp.add_argument("--mean", type=_triple, default=None, help="normalisation mean R,G,B (default ImageNet)")
    imp.add_argument("--std", type=_triple, default=None, help="normalisation std R,G,B (default ImageNet)")
    imp.add_argument("--arch-kwargs", type=_json_object, default={}, help="JSON options of the constructor")
    imp.add_argument(
        "--trust-code",
        action="store_true",
        help="allow python: specs (runs your code; loading needs PATHXAI_TRUST_CODE=1)",
    )
    imp.add_argument("--out", required=True, type=Path, help="output model directory")
    cal = command(
        msub,
        run_calibrate,
        "calibrate",
        help="fit a temperature and an operating threshold on validation rows; store them in the card",
        description="Scores the manifest's --split rows (validation cases, never test), fits the temperature "
        "that minimises their negative log-likelihood and the threshold with the best balanced accuracy "
        "averaged over sites, and writes both into MODEL_DIR/model_card.json (weights unchanged).",
    )
    cal.add_argument("--model", required=True, type=Path, help="model directory (from pathxai train)")
    cal.add_argument("--manifest", required=True, help="CSV manifest holding the validation rows")
    cal.add_argument("--data-root", default=None, help="folder the manifest's paths are relative to")
    cal.add_argument("--split", default="val", help="split value of the validation rows (default: val)")
    add_quiet(cal)
    p.set_defaults(func=lambda args: _help(p))


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate the model and print what changed."""
    from pathxai.pipeline.calibrate import calibrate_model

    r = calibrate_model(args.model, args.manifest, args.split, args.data_root, progress=not args.quiet)
    print(
        f"temperature {r['temperature']:.3f}, threshold {r['threshold']:.3f} "
        f"({r['n_patches']} validation patches, {len(r['patients'])} patients)"
    )
    print(
        f"ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}, NLL {r['nll_before']:.4f} -> {r['nll_after']:.4f}"
    )
    print(f"written: {args.model / 'model_card.json'}")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _command(args: argparse.Namespace) -> str:
    """The import command line that reproduces this model (from the parsed options)."""
    words = ["pathxai", "model", "import"]
    for key in ("arch", "weights", "head_weights", "classes", "tumour_class", "mpp", "size", "mean", "std"):
        value = getattr(args, key)
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        words += [f"--{key.replace('_', '-')}", text]
    if args.arch_kwargs:
        words += ["--arch-kwargs", json.dumps(args.arch_kwargs, sort_keys=True)]
    if args.trust_code:
        words.append("--trust-code")
    return shlex.join([*words, "--out", str(args.out)])


def run_import(args: argparse.Namespace) -> int:
    """Import the model, save it, load it back to check, and print a summary."""
    from pathxai.model import load_model_with_card, save_model
    from pathxai.model.importer import IMAGENET_MEAN, IMAGENET_STD, ImportSpec, import_model

    spec = ImportSpec(
        **pick(args, "arch", "weights", "classes", "mpp", "head_weights", "tumour_class"),
        **pick(args, "arch_kwargs", "trust_code", input_size="size"),
        mean=args.mean or IMAGENET_MEAN,
        std=args.std or IMAGENET_STD,
        command=_command(args),
    )
    model, card = import_model(spec)
    save_model(model, card, args.out)
    if not card.trust_code:
        model, card = load_model_with_card(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"imported {card.arch} ({params / 1e6:.2f} M parameters), classes {list(card.classes)}, "
        f"tumour class {card.classes[card.tumour_index]!r}, {card.input_size} px at {card.mpp} µm/px"
    )
    if card.source.get("stripped_prefix"):
        print(f"stripped key prefix {card.source['stripped_prefix']!r}")
    if card.source.get("ignored_tensors"):
        print(f"left out the backbone's own classifier: {len(card.source['ignored_tensors'])} tensor(s)")
    if card.trust_code:
        print("this model runs your code: load it with PATHXAI_TRUST_CODE=1")
    print(f"written: {args.out}")
    return 0
