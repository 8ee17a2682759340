import sys

from tiltflow.cli import main

sys.exit(main())
