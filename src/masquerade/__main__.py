import sys

from masquerade.cli.main import main

sys.exit(main())
