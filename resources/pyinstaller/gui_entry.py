"""Frozen entry point of `facebatch-gui` (PyInstaller runs this as __main__)."""

from facebatch_gui.qt.app import main

raise SystemExit(main())
