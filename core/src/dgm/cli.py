"""The ``dgm`` command."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import textwrap
import tomllib
import warnings
from collections.abc import Sequence
from pathlib import Path

from dgm import __version__
from dgm.cpu_allocator import keep_freed_memory
from dgm.errors import DgmError, RecipeError, RecipeWarning, RunDirError
from dgm.registry import SINGULAR, Registry

SINGULAR_KINDS = tuple(SINGULAR.values())

EPILOG = ("Errors print as one paragraph; add --traceback (or set DGM_TRACEBACK=1) to see "
          "the Python traceback. DGM_PLUGINS=a,b loads only those plugins (empty: none); "
          "DGM_TRACE_HOOKS=1 traces hook calls.")


def _cmd_run(args: argparse.Namespace) -> None:
    from dgm.workflows import run_recipe

    run_recipe(args.recipe, args.overrides, allow_outside=args.allow_outside)


def _cmd_sample(args: argparse.Namespace) -> None:
    from dgm.recipes import parse_value
    from dgm.runs import RunDir
    from dgm.sampling import sample_run

    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--option {item!r}: expected key=value, e.g. steps=50")
        options[key.strip()] = parse_value(raw)
    given = [(flag, value) for flag, value in (("--condition", args.condition),
                                                ("--text", args.text),
                                                ("--condition-file", args.condition_file))
             if value is not None]
    if len(given) > 1:
        raise RecipeError(f"dgm sample: give one of --condition, --text and --condition-file, "
                          f"not {' and '.join(flag for flag, _ in given)}")
    given_as, condition = given[0] if given else ("--condition", None)
    run = RunDir.open(args.run_dir)
    sample_run(run, n=args.n, seed=args.seed, out=args.out, options=options,
               condition=condition, given_as=given_as, size=args.size)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from dgm.evaluation import evaluate_run
    from dgm.reporting import format_table
    from dgm.runs import RunDir

    runs = [RunDir.open(path) for path in args.run_dirs]
    reports = []
    for run in runs:
        if args.saved:
            if not run.evaluation_file.is_file():
                raise RunDirError(f"run folder {str(run.path)!r} has no evaluation.json; "
                                  "run `dgm evaluate` on it without --saved")
            reports.append(json.loads(run.evaluation_file.read_text()))
        else:
            reports.append(evaluate_run(run))
    print(format_table(reports))


def _cmd_export(args: argparse.Namespace) -> None:
    from dgm.export import export_diffusers
    from dgm.runs import RunDir

    export_diffusers(RunDir.open(args.run_dir), args.out_dir)


def _recipe_description(path: Path) -> str:
    try:
        return tomllib.loads(path.read_text()).get("run", {}).get("description", "")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return f"(unreadable: {exc})"


def _cmd_recipes(args: argparse.Namespace) -> None:
    from dgm.plugins import get_registry

    rows = []
    root = Path(args.dir)
    if root.is_dir():
        for path in sorted(root.rglob("*.toml")):
            rows.append((str(path), _recipe_description(path)))
    for entry in get_registry().entries("recipes"):
        rows.append((entry.name, _recipe_description(Path(entry.obj))))
    if not rows:
        print(f"no recipes found in {root}/ or in plugins")
        return
    width = max(len(r[0]) for r in rows)
    for name, description in rows:
        print(f"{name.ljust(width)}  {description}")


def _cmd_plugins(args: argparse.Namespace) -> None:
    from dgm.plugins import get_host

    host = get_host()
    infos = list(host.plugins.values())
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    for info in infos:
        status = "loaded" if info.loaded and not info.error else (
            "loaded with errors" if info.loaded else "FAILED")
        print(f"{info.name}  ({info.distribution} {info.version})  {status}")
        for kind, names in info.registered.items():
            print(textwrap.fill(", ".join(names), width=88, initial_indent=f"    {kind}: ",
                                subsequent_indent=" " * (6 + len(kind)),
                                break_on_hyphens=False))
        declared = [f"{kind} ({host.registry.singular(kind)})"
                    for kind, plugin in host.registry.kind_declared_by.items()
                    if plugin == info.name]
        if declared:
            print(f"    declares kinds: {', '.join(declared)}")
        if info.error:
            print(f"    error: {info.error}")
        for warning in info.warnings:
            print(f"    warning: {warning}")
    if not infos:
        print("no plugins loaded")


STRUCTURAL = {"datasets": ("split",), "families": ("ctx",), "priors": ("shape",),
              "modalities": ("info",), "likelihoods": ("grid",)}
"""Arguments dgm passes itself, by kind: not settings a recipe gives. A network's are
its roles' structural arguments (:func:`structural`)."""


def structural(kind: str) -> tuple[str, ...]:
    """The arguments dgm or a family passes to an entry of ``kind`` itself."""
    if kind != "networks":
        return STRUCTURAL.get(kind, ())
    from dgm.contract import CONDITION_DIM, ROLES

    return tuple(dict.fromkeys([a for role in ROLES.values() for a in role.arguments]
                               + [CONDITION_DIM]))
TABLES = {"networks": "[networks.<role>]", "datasets": "[data]", "families": "[family]",
          "priors": "[prior]", "likelihoods": "[likelihood]"}


def role_table(registry: Registry) -> str:
    """Every role the registered families build, as a Markdown table: which families,
    what the factory receives, how the network is called, what it must return, and how
    a condition reaches it. CONTRIBUTING.md carries this table (a test compares)."""
    from dgm.assembly import family_roles
    from dgm.contract import CONDITION_DIM, ROLES

    users: dict[str, list[str]] = {}
    for entry in registry.entries("families"):
        for role in family_roles(entry):
            users.setdefault(role.name, []).append(f"`{entry.name}`")
    conditioned = {"input": "attached to its input by the family (the sizing argument "
                            "grows by `condition.dim`)",
                   "argument": f"`{CONDITION_DIM}` at build, the encoded condition as the "
                               "last call argument",
                   None: "-"}
    rows = ["| role | families | factory receives | called as | must return | "
            "a condition reaches it | checks |", "|---|---|---|---|---|---|---|"]
    for role in ROLES.values():
        families = ", ".join(users.get(role.name, [])) or "every conditional family"
        arguments = ", ".join(f"`{a}`" for a in role.arguments)
        checks = "; ".join(role.checks) or "-"
        rows.append(f"| `{role.name}` | {families} | {arguments} | `{role.call}` | "
                    f"{role.returns} | {conditioned[role.conditioning]} | {checks} |")
    return "\n".join(rows)


def _cmd_show(args: argparse.Namespace) -> None:
    import inspect

    from dgm.plugins import get_registry
    from dgm.settings import settings_of

    registry = get_registry()
    if args.roles:
        print(role_table(registry))
        return
    if not args.name:
        raise RecipeError("dgm show: give a registered NAME (or --roles)")
    entries = ([registry.get(registry.kind_of(args.kind), args.name)] if args.kind
               else registry.find(args.name))
    for i, entry in enumerate(entries):
        print(("\n" if i else "") + f"{entry.name}  ({registry.singular(entry.kind)}, plugin "
              f"{entry.plugin})")
        doc = entry.description or (inspect.getdoc(entry.obj) or "").split("\n\n")[0]
        if doc:
            print(textwrap.fill(" ".join(doc.split()), width=88, initial_indent="  ",
                                subsequent_indent="  "))
        if entry.kind == "recipes":
            print(f"  file: {entry.obj}")
            continue
        if entry.kind == "modalities":
            try:
                modality = entry.obj()
            except Exception:  # noqa: BLE001 - a modality that needs its data's DataInfo
                modality = None
            for role, network in (modality.networks if modality else {}).items():
                print(f"  default {role}: {network}")
            if modality:
                print(f"  default likelihood: {modality.likelihood}")
            continue
        if entry.kind == "families":
            from dgm.assembly import family_roles

            for role in family_roles(entry):
                print(f"  role {role.name}: factory({', '.join(role.arguments)}), then "
                      f"{role.call} -> {role.returns}")
        rows = settings_of(entry.obj, structural(entry.kind))
        table = TABLES.get(entry.kind)
        print(f"settings{f' ({table} keys)' if table else ''}:" if rows else
              "settings: none")
        name_w = max((len(r[0]) for r in rows), default=0)
        type_w = max((len(r[1]) for r in rows), default=0)
        for name, kind, default in rows:
            if default not in ("required", "optional", ""):
                default = f"default {default}"
            print(f"  {name.ljust(name_w)}  {kind.ljust(type_w)}  {default}".rstrip())


def _cmd_plugin_new(args: argparse.Namespace) -> None:
    from dgm.scaffold import new_plugin

    root = new_plugin(args.name, args.dir)
    print(f"wrote {root}/\nnext:\n  dgm install -e {root}\n  cd {root} && {sys.executable} -m "
          f"pytest    # dgm's own python\n  dgm run {args.name}:{args.name}-vae\n  dgm run "
          f"{args.name}:{args.name}-diffusion")


def _pip(args: list[str]) -> None:
    """Run pip in dgm's own environment; its exit status becomes dgm's. Plugins are
    not loaded, so a broken one can still be replaced or removed."""
    import subprocess

    code = subprocess.call([sys.executable, "-m", "pip", *args])
    if code:
        raise SystemExit(code)


def _cmd_install(args: argparse.Namespace) -> None:
    editable = [item for path in args.editable for item in ("-e", path)]
    if not args.packages and not editable:
        raise RecipeError("dgm install: name a package or a path, e.g. dgm install "
                          "dgm-signals, dgm install ./dgm-signals, dgm install -e .")
    _pip(["install", *args.pip_args, *editable, *args.packages])


def _cmd_uninstall(args: argparse.Namespace) -> None:
    _pip(["uninstall", "-y", *args.pip_args, *args.packages])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgm", description="Deep generative models across modalities: train, sample "
        "and evaluate recipes; list plugins.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dgm {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train a recipe, then sample and evaluate it",
                       description="Train the recipe into its run folder (runs/<run.name> "
                       "unless run.dir is set), write samples, and report held-out NLL. "
                       "Running the same command again resumes from the last checkpoint.",
                       epilog=EPILOG)
    p.add_argument("recipe", help="a recipe TOML file, or a plugin recipe name "
                   "(see `dgm recipes`)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. train.steps=200 family.latent_dim=8")
    p.add_argument("--allow-outside", action="store_true",
                   help="let run.dir lie outside the current folder (and $DGM_RUNS_ROOT)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw N samples from a run's final weights and write each "
                       "as a file plus a preview grid.", epilog=EPILOG)
    p.add_argument("run_dir", help="a run folder made by `dgm run`")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed (default 1234)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN_DIR/samples)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampling option of the run's family, e.g. -o sampler=ddim "
                   "-o steps=50 for diffusion (repeatable)")
    p.add_argument("--condition", default=None, metavar="CLASS",
                   help="draw every sample for this class of the run's data (a name or "
                   "its index), e.g. --condition seven (class-conditional runs)")
    p.add_argument("--text", default=None, metavar="TEXT",
                   help="draw every sample for this text, e.g. --text seven (runs "
                   "conditioned on a token sequence)")
    p.add_argument("--condition-file", type=Path, default=None, metavar="FILE",
                   help="draw every sample for the condition in this file, read by the "
                   "condition modality's codec, e.g. --condition-file small.png (runs "
                   "conditioned on a tensor)")
    p.add_argument("--size", default=None, metavar="WIDTHxHEIGHT",
                   help="sample at this size instead of the training size, e.g. --size "
                   "1024x768 (fully convolutional networks: textures)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("evaluate", help="held-out NLL and sample metrics of trained runs",
                       description="For each run: held-out negative log-likelihood in nats "
                       "per example and bits per dimension, saying whether it is exact or a "
                       "bound, and the sample metrics next to their real-vs-real references; "
                       "writes RUN_DIR/evaluation.json and prints one table, a row per run.",
                       epilog=EPILOG)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders made by `dgm run`")
    p.add_argument("--saved", action="store_true",
                   help="tabulate the saved evaluation.json files instead of recomputing")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="export a diffusion run as a diffusers DDPMPipeline",
                       description="Write a trained diffusion run's UNet and noise schedule "
                       "as a folder that diffusers.DDPMPipeline.from_pretrained(OUT_DIR) "
                       "loads offline. OUT_DIR must not exist yet (or be empty).",
                       epilog=EPILOG)
    p.add_argument("run_dir", help="a diffusion run folder made by `dgm run`")
    p.add_argument("out_dir", type=Path, help="the folder to write")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("recipes", help="list recipes in ./recipes and in plugins",
                       description="List the recipe files under a folder (default "
                       "./recipes) and the recipes plugins ship.", epilog=EPILOG)
    p.add_argument("--dir", default="recipes", help="folder to scan (default recipes)")
    p.set_defaults(func=_cmd_recipes)

    p = sub.add_parser("plugins", help="list plugins, what they register, and errors",
                       description="List each plugin with its distribution, version, what it "
                       "registers, and the error of any that failed to load.", epilog=EPILOG)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("show", help="describe a registered entry and its recipe settings",
                       description="Print what NAME (a family, network, data set, "
                       "likelihood, prior, metric, modality or recipe; see `dgm plugins`) "
                       "is, which plugin registered it, and the settings a recipe may give "
                       "it: name, type and default, from its factory's signature.",
                       epilog=EPILOG)
    p.add_argument("name", nargs="?", help="a registered name, e.g. core:diffusion or unet2d")
    p.add_argument("--roles", action="store_true",
                   help="print the table of network roles the families build")
    p.add_argument("--kind", default=None, metavar="KIND",
                   help="look only among entries of this kind: "
                   f"{', '.join(sorted(SINGULAR_KINDS))}, or one a plugin declares")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("plugin", help="write a new plugin project (dgm plugin new NAME)",
                       description="Plugin authoring; see CONTRIBUTING.md, Writing a plugin.",
                       epilog=EPILOG)
    plugin_sub = p.add_subparsers(dest="plugin_command", required=True, metavar="ACTION")
    q = plugin_sub.add_parser("new", help="write dgm-NAME/: an installable plugin project",
                              description="Write dgm-NAME/: pyproject with the dgm entry "
                              "point, package dgm_NAME with a working modality (1-D signals), "
                              "a recipe, tests using dgm.testing, and a README.")
    q.add_argument("name", help="the plugin's namespace, e.g. signals")
    q.add_argument("--dir", type=Path, default=Path("."),
                   help="folder to write dgm-NAME/ in (default .)")
    q.set_defaults(func=_cmd_plugin_new)

    p = sub.add_parser("install", help="pip install plugins into dgm's environment",
                       description="Run `python -m pip install` with dgm's own Python. "
                       "Options pip knows (-U, --no-deps, --pre, ...) are passed through. "
                       "Loads no plugin, so it works while an installed plugin is broken.")
    p.add_argument("packages", nargs="*", metavar="NAME_OR_PATH",
                   help="a distribution name (dgm-signals) or a project folder")
    p.add_argument("-e", "--editable", action="append", default=[], metavar="PATH",
                   help="install a project folder in editable mode (repeatable)")
    p.set_defaults(func=_cmd_install, pip_args=[])

    p = sub.add_parser("uninstall", help="pip uninstall -y plugins from dgm's environment",
                       description="Run `python -m pip uninstall -y` with dgm's own Python; "
                       "loads no plugin.")
    p.add_argument("packages", nargs="+", metavar="NAME", help="distribution names")
    p.set_defaults(func=_cmd_uninstall, pip_args=[])
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """dgm's own warnings read like its errors; others keep Python's format."""
    if issubclass(category, RecipeWarning):
        return f"dgm: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


WRITE_FAILURES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EACCES: "permission was denied", errno.EPERM: "it is not permitted",
                  errno.EROFS: "the file system is read-only", errno.EFBIG: "the file is "
                  "too large for the file system"}
"""Failures to write that are about the machine, not dgm: reported as one paragraph."""


def write_failure(exc: OSError) -> str:
    """One paragraph for a write that failed because of the disk or permissions."""
    where = f"{str(exc.filename)!r}" if exc.filename else "a file"
    verb = "open" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
    return (f"could not {verb} {where}: {WRITE_FAILURES[exc.errno]} "
            f"({errno.errorcode.get(exc.errno, exc.errno)}). Nothing already saved was lost: "
            "checkpoints, weights, the recipe and the reports are written beside their final "
            "names and renamed when complete, so a run folder keeps its last complete "
            "checkpoint and files. Free space or fix the "
            "permissions and run the same command again (a run resumes where its last "
            "checkpoint left off)")


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_memory()
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # only install and uninstall pass options through (to pip)
        if args.command not in ("install", "uninstall"):
            parser.parse_args(argv)  # the usual "unrecognized arguments" error
        args.pip_args = unknown
    show_traceback = args.traceback or bool(os.environ.get("DGM_TRACEBACK"))
    try:
        args.func(args)
    except DgmError as exc:
        if show_traceback:
            raise
        print(f"dgm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if show_traceback or exc.errno not in WRITE_FAILURES:
            raise
        print(f"dgm: error: {write_failure(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgm: interrupted; the last checkpoint is kept and the same command resumes",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
