"""`gemfinder discover`: list a base model's fine-tunes on the Hub and write them as candidates.

gemfinder discover --base-model meta-llama/Llama-3.1-8B-Instruct \\
    --endpoint 'http://tgi-{dns}.fleet.svc:8080' --out candidates.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from gemfinder.backends.registry import DEFAULT, NAMES, help_text
from gemfinder.discovery.candidates import (
    Mapped,
    Serving,
    check_template,
    to_candidates,
    write_candidates,
    write_endpoints,
)
from gemfinder.discovery.walk import DEFAULT_RELATIONS, RELATIONS, Discovery, Progress, discover
from gemfinder.errors import UserError
from gemfinder.outputs import check_writable

_PROGRESS_EVERY_S = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "discover",
        help="find a base model's fine-tunes on the Hub and write them as candidates",
        description="Walk the model tree of --base-model on the Hugging Face Hub (fine-tunes, "
        "adapters, merges; quantized copies only when asked) and write the models as a "
        "candidates file. Progress on stderr, a summary on stdout.",
    )
    parser.add_argument("--base-model", required=True, help="Hub id of the tree's root")
    parser.add_argument(
        "--endpoint",
        required=True,
        help="URL serving each full model; may contain {model_id}, {slug} (id with / -> --) or "
        "{dns} (a lower-case DNS label made from the id)",
    )
    parser.add_argument(
        "--adapter-endpoint",
        help="URL serving the base's LoRA adapters (default: --endpoint of the base model)",
    )
    parser.add_argument(
        "--backend",
        choices=NAMES,
        default=DEFAULT,
        help=help_text("how every candidate is called"),
    )
    parser.add_argument(
        "--relations",
        nargs="+",
        choices=RELATIONS,
        default=list(DEFAULT_RELATIONS),
        help="relations to follow (default: finetune adapter merge)",
    )
    parser.add_argument("--max-depth", type=int, default=3, help="levels below the base")
    parser.add_argument("--max-models", type=int, default=2000, help="stop after this many")
    parser.add_argument(
        "--min-downloads", type=float, default=0.0, help="skip models below (30-day downloads)"
    )
    parser.add_argument(
        "--nested-adapters",
        action="store_true",
        help="keep adapters of fine-tunes, on their parent's --endpoint (default: skip them)",
    )
    parser.add_argument(
        "--hub-endpoint", help="Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)"
    )
    parser.add_argument("--token", help="Hub token (default: huggingface_hub's, for its hub)")
    parser.add_argument(
        "--timeout-s", type=float, default=60.0, help="give up on a Hub request after this long"
    )
    parser.add_argument("--out", required=True, help="candidates file to write (.jsonl)")
    parser.add_argument(
        "--endpoints-out",
        help="also write the endpoints JSON (each URL with the LoRA adapters it must load), "
        "for gemfinder search/serve --endpoints",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace --out / --endpoints-out if they exist"
    )
    parser.add_argument("--top", type=int, default=10, help="most downloaded models shown")
    parser.set_defaults(handler=_discover)


def _check(args: argparse.Namespace) -> Path:
    """Every flag is checked before the walk, so a bad one costs no Hub requests."""
    out = check_writable(args.out, "--out", suffix=".jsonl", overwrite=args.force)
    if args.endpoints_out is not None:
        if Path(args.endpoints_out).resolve() == out.resolve():
            raise UserError("--endpoints-out", "must differ from --out")
        check_writable(args.endpoints_out, "--endpoints-out", suffix=".json", overwrite=args.force)
    check_template(args.endpoint, "--endpoint")
    if args.adapter_endpoint is not None:
        check_template(args.adapter_endpoint, "--adapter-endpoint")
    for flag, value in (("--max-depth", args.max_depth), ("--max-models", args.max_models)):
        if value < 1:
            raise UserError(flag, f"must be at least 1, got {value}")
    if not 0 < args.timeout_s < float("inf"):
        raise UserError("--timeout-s", f"must be positive seconds, got {args.timeout_s}")
    if args.min_downloads < 0:
        raise UserError("--min-downloads", "must be >= 0")
    if args.top < 0:
        raise UserError("--top", "must be >= 0")
    return out


def _discover(args: argparse.Namespace) -> int:
    out = _check(args)
    found = discover(
        args.base_model,
        hub_endpoint=args.hub_endpoint,
        token=args.token,
        relations=args.relations,
        max_depth=args.max_depth,
        max_models=args.max_models,
        progress=_Reporter(),
        timeout_s=args.timeout_s,
    )
    serving = Serving(
        endpoint=args.endpoint,
        backend=args.backend,
        adapter_endpoint=args.adapter_endpoint,
        min_downloads=args.min_downloads,
        nested_adapters=args.nested_adapters,
    )
    mapped = to_candidates(found, serving)
    write_candidates(mapped.candidates, out, force=args.force)
    if args.endpoints_out is not None:
        write_endpoints(mapped.candidates, args.endpoints_out, force=args.force)
    print(summary(found, mapped, out, args.top))
    if args.endpoints_out is not None:
        print(f"wrote the endpoint settings to {args.endpoints_out}")
    return 0


class _Reporter:
    """Progress lines on stderr: one per finished depth, and one every few seconds inside."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.done:
            line = f"depth {p.depth}: {p.found} models ({p.total} in all)"
        elif now - self.last >= _PROGRESS_EVERY_S:
            line = f"depth {p.depth}: {p.parents_done}/{p.parents} parents listed, {p.found} so far"
        else:
            return
        self.last = now
        print(line, file=sys.stderr, flush=True)


def summary(found: Discovery, mapped: Mapped, out: Path, top: int) -> str:
    """The stdout report: models per depth and relation, what was skipped, the most popular."""
    lines = [
        f"{len(found.models)} models under {found.base_model} on {found.hub_endpoint} "
        f"({found.listings} listings, {found.seconds:.1f} s)"
    ]
    if found.note:
        lines.append(f"note: {found.note}")
    elif any(m.depth == found.max_depth for m in found.models):
        lines.append(
            f"note: stopped at --max-depth {found.max_depth}; models below that depth, if any, "
            "were not listed"
        )
    if found.reached_again:
        lines.append(f"{found.reached_again} models reached again through another parent "
                     "(merges), kept once under the first")  # fmt: skip
    relations = list(found.relations)
    counts = Counter((m.depth, m.relation) for m in found.models)
    header = f"{'depth':>5}  " + "  ".join(f"{r:>9}" for r in relations) + f"  {'total':>6}"
    lines += ["", header]
    for depth in sorted({m.depth for m in found.models}):
        if depth == 0:
            lines.append(f"{'0':>5}  " + "  ".join(" " * 9 for _ in relations) + f"  {1:>6}  base")
            continue
        cells = "  ".join(f"{counts[(depth, r)]:>9}" for r in relations)
        lines.append(f"{depth:>5}  {cells}  {sum(counts[(depth, r)] for r in relations):>6}")
    served = Counter("adapter" if c.adapter_id else "full" for c in mapped.candidates)
    lines += [
        "",
        f"wrote {len(mapped.candidates)} candidates to {out} "
        f"({served['full']} full models, {served['adapter']} adapters)",
    ]
    reasons = Counter(reason for _, reason in mapped.skipped)
    if reasons:
        lines.append(f"skipped {len(mapped.skipped)}:")
        lines += [f"  {n:>6}  {reason}" for reason, n in reasons.most_common()]
    why = {m.model_id: reason for m, reason in mapped.skipped}
    popular = sorted(found.models, key=lambda m: -(m.downloads or 0))[:top]
    if popular:
        lines += ["", f"most downloaded ({len(popular)} of {len(found.models)}):"]
        lines.append(f"{'downloads':>10}  {'depth':>5}  {'relation':<9}  model")
        for m in popular:
            note = "  (official)" if m.official else ""
            if m.model_id in why:
                note = f"  (skipped: {why[m.model_id]})"
            relation = m.relation or "base"
            lines.append(f"{m.downloads or 0:>10}  {m.depth:>5}  {relation:<9}  {m.model_id}{note}")
    return "\n".join(lines)
