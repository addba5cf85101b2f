"""Frozen entry point of the `facebatch` command (PyInstaller runs this as __main__)."""

from facebatch_gui.cli import main

raise SystemExit(main())
