import sys

from facebatch_gui.cli import main

sys.exit(main())
