import sys

from mailmig_tui.cli import main

sys.exit(main())
