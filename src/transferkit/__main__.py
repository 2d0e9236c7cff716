import sys

from transferkit.cli.main import main

sys.exit(main())
