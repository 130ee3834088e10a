import sys

from cmpose.cli.main import main

sys.exit(main())
