"""`vtg-rl` command line: one entry point, subcommands implemented next to the code they drive.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``vtg-rl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: (command words, module, one-line help)
COMMANDS = [
    (("synth",), "vtg_rl.data.synthetic_cli", "generate the synthetic VTG world (mp4 + jsonl)"),
    (("data", "check"), "vtg_rl.data.check", "validate a dataset file in one of the supported formats"),
    (("data", "split"), "vtg_rl.data.split", "split a dataset jsonl into parts by video (no video in two parts)"),
    (("eval",), "vtg_rl.eval_cli", "score a QVHighlights-style submission against ground truth"),
    (("models", "build-tiny"), "vtg_rl.models.cli", "build and save the tiny local Qwen2.5-VL / CLIP"),
    (("features",), "vtg_rl.heads.features_cli", "extract frozen-CLIP features for the DETR / R2 heads"),
    (("predict",), "vtg_rl.predict", "ground a query in a video with any trained vtg-rl model"),
    (("infer",), "vtg_rl.infer", "predict a whole benchmark split (batched, resumable, multi-process) for vtg-rl eval"),
    (("view",), "vtg_rl.view.cli", "write a static HTML page to browse a dataset with its predictions"),
    (("agents", "reflect"), "vtg_rl.agents.cli", "Boundary Reflection: flag partially annotated samples"),
    (("agents", "difficulty"), "vtg_rl.agents.cli", "Difficulty Estimation: score samples by zero-shot rollouts"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtg-rl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_ in COMMANDS:
        if len(words) == 1:
            p = sub.add_parser(words[0], help=help_, description=help_)
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            p = groups[words[0]].add_parser(words[1], help=help_, description=help_)
        p.set_defaults(_module=module)
        p.set_defaults(_lazy_args=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # First pass: find which subcommand runs, then let its module add its own arguments.
    # (--help is held back in this pass so the subcommand's own options are listed by the second one)
    known, _ = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    module_name = getattr(known, "_module", None)
    if module_name is None:
        parser = build_parser()
        if argv and argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        if argv:
            return int(parser.parse_args(argv) is None) or 2
        parser.print_help()
        return 0 if not argv else 2
    module = importlib.import_module(module_name)
    if hasattr(module, "run_argv"):  # a command with its own parser (TrlParser dataclasses): hand it the rest
        words = next(w for w, m, _ in COMMANDS if m == module_name and list(w) == argv[:len(w)])
        return int(module.run_argv(list(words), argv[len(words):]) or 0)
    parser = build_parser()
    # re-walk to the subcommand's parser and give it the module's arguments
    target = _find_subparser(parser, argv)
    module.add_arguments(target)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


def _find_subparser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    current = parser
    for word in argv:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        current = actions[0].choices[word]
    return current


if __name__ == "__main__":
    sys.exit(main())
