"""`facebatch models ...` and `facebatch self-check`: the model packs, from a terminal.

Kept apart from cli.py so that batch commands and pack commands change independently. Errors
(ModelPackError) reach cli.main, which prints them and exits 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from facebatch_gui.core.packs import (
    CATALOG,
    LICENCE_NOTICE,
    DownloadProgress,
    PackCancelledError,
    PackManager,
)

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130


def add_model_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add `models` (with its own subcommands) and `self-check` to the main parser."""
    models = sub.add_parser(
        "models",
        help="list, download, import, verify or remove face model packs",
        description=f"Face model packs in $INSIGHTFACE_HOME/models. {LICENCE_NOTICE}",
    )
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="known and installed packs")
    p.add_argument("--json", action="store_true")
    p = msub.add_parser("download", help="download, verify and install a known pack")
    p.add_argument("name", help=f"one of: {', '.join(CATALOG)}")
    p.add_argument("--url", help="download from this address instead (a mirror)")
    p.add_argument("--sha256", help="with --url: the zip's expected sha256")
    p.add_argument("--replace", action="store_true", help="reinstall an installed pack")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = msub.add_parser("import", help="install a pack from a zip or a folder of .onnx files")
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="pack name (default: the zip's or folder's name)")
    p.add_argument("--replace", action="store_true", help="replace an installed pack")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = msub.add_parser("verify", help="re-check installed packs' files and load their models")
    p.add_argument("name", nargs="?", help="one pack (default: all installed)")
    p.add_argument("--json", action="store_true")
    p = msub.add_parser("remove", help="delete an installed pack (and its partial download)")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask")

    p = sub.add_parser(
        "self-check",
        help="load a pack, detect and embed one photo, print the figures (also: --self-check)",
    )
    p.add_argument("--model-dir", help="folder of a model pack (or FACEBATCH_MODEL_DIR)")
    p.add_argument("--image", type=Path, help="a photo (default: a built-in test image)")
    p.add_argument("--json", action="store_true")


def run_model_command(args: argparse.Namespace) -> int:
    if args.command == "self-check":
        return _self_check(args)
    manager = PackManager()
    command = args.models_command
    if command == "list":
        return _list(manager, args)
    if command in ("download", "import"):
        return _install(manager, args)
    if command == "verify":
        return _verify(manager, args)
    return _remove(manager, args)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def _list(manager: PackManager, args: argparse.Namespace) -> int:
    rows = manager.entries()
    if args.json:
        out = [
            {
                "name": r.name,
                "installed": r.installed is not None,
                "path": str(r.installed.path) if r.installed else None,
                "size": r.info.size if r.info else (r.installed.size if r.installed else None),
                "sha256": r.info.sha256 if r.info else None,
                "url": r.info.url if r.info else None,
                "partial_bytes": r.partial_bytes,
                "description": r.info.description if r.info else None,
            }
            for r in rows
        ]
        print(json.dumps({"root": str(manager.root), "packs": out, "licence": LICENCE_NOTICE}))
        return EXIT_OK
    print(f"Model packs in {manager.root}")
    print(f"{'name':12}  {'status':22}  {'size':>10}  description")
    for r in rows:
        if r.installed is not None:
            status = "installed"
            if r.installed.manifest and r.installed.manifest.get("catalog_verified"):
                status += " (verified)"
        elif r.partial_bytes and r.info and r.info.size:
            status = f"partial {100 * r.partial_bytes / r.info.size:.0f}% (resumes)"
        else:
            status = "available" if r.info else "installed"
        size = r.info.size if r.info else (r.installed.size if r.installed else None)
        desc = r.info.description if r.info else "(not in the catalog)"
        print(f"{r.name:12}  {status:22}  {_mb(size):>10}  {desc}")
    print(f"\nLicence: {LICENCE_NOTICE}")
    return EXIT_OK


class _Bar:
    """A tqdm bar on stderr that follows DownloadProgress events across stages."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.stage = ""

    def __call__(self, p: DownloadProgress) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if p.stage != self.stage:
            self.close()
            self.stage = p.stage
            if p.stage == "checking":
                print("checking that every model loads...", file=sys.stderr)
            if p.stage in ("checking", "done"):
                return
            self.bar = tqdm(
                total=p.total,
                initial=p.bytes_done,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=p.stage,
                file=sys.stderr,
            )
            return
        if self.bar is not None:
            self.bar.update(p.bytes_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _install(manager: PackManager, args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_sigint(*_: object) -> None:  # first Ctrl-C: cancel cleanly; second: default
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = _Bar(args.quiet)
    try:
        if args.models_command == "download":
            info = CATALOG.get(args.name)
            if info is not None and not args.quiet:
                print(f"{info.name}: {_mb(info.size)}. {info.licence}", file=sys.stderr)
            path = manager.download(
                args.name,
                url=args.url,
                sha256=args.sha256,
                progress=bar,
                cancelled=stop.is_set,
                replace=args.replace,
            )
        else:
            path = manager.import_pack(
                args.path, args.name, progress=bar, cancelled=stop.is_set, replace=args.replace
            )
    except PackCancelledError as exc:
        bar.close()
        print(f"facebatch: cancelled: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    print(f"Installed {path.name} in {path}", file=sys.stderr)
    return EXIT_OK


def _verify(manager: PackManager, args: argparse.Namespace) -> int:
    names = [args.name] if args.name else [p.name for p in manager.list_installed()]
    if not names:
        print(f"No model packs installed in {manager.root}", file=sys.stderr)
        return EXIT_FAILED
    reports = [manager.verify(n) for n in names]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "ok": r.ok,
                        "path": str(r.path),
                        "problems": r.problems,
                        "notes": r.notes,
                        "routed": r.routed,
                        "files": [
                            {"name": f.name, "size": f.size, "sha256": f.sha256} for f in r.files
                        ],
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
    else:
        for r in reports:
            print(f"{r.name}: {'OK' if r.ok else 'PROBLEMS'} ({r.path})")
            for task, fname in sorted(r.routed.items()):
                print(f"  {task}: {fname}")
            for problem in r.problems:
                print(f"  ! {problem}")
            for note in r.notes:
                print(f"  - {note}")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def _remove(manager: PackManager, args: argparse.Namespace) -> int:
    path = manager.pack_path(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "facebatch: error: removing needs --yes when not run interactively", file=sys.stderr
            )
            return 2
        if input(f"Delete model pack {args.name} ({path})? [y/N] ").strip().lower() != "y":
            return EXIT_FAILED
    manager.remove(args.name)
    print(f"Removed {args.name}", file=sys.stderr)
    return EXIT_OK


def _self_check(args: argparse.Namespace) -> int:
    from facebatch_gui.core.selfcheck import run_self_check

    result = run_self_check(args.model_dir, args.image)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        v = result.versions
        print(
            "FaceBatch self-check: "
            + ", ".join(f"{k} {v[k]}" for k in v if k != "frozen")
            + f"; frozen bundle: {v.get('frozen')}"
        )
        print(f"  model pack: {result.model_dir}")
        print(f"  image: {result.image}, {result.image_size[0]}x{result.image_size[1]}")
        score = "-" if result.best_score is None else f"{result.best_score:.3f}"
        print(
            f"  load {result.load_s:.2f} s; detect {1000 * result.detect_s:.0f} ms: "
            f"{result.faces} face(s), best det score {score}"
        )
        print(
            f"  embed {1000 * result.embed_s:.1f} ms: dim {result.embedding_dim}, "
            f"raw norm {result.embedding_norm:.3f}"
        )
        print(result.message)
    return EXIT_OK if result.ok else EXIT_FAILED
