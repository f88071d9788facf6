import sys

from pvbuild.cli import main

sys.exit(main())
