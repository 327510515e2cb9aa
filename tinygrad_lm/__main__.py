"""``python -m tinygrad_lm`` is the ``tinygrad-lm`` command."""
import sys

from .cli import main

sys.exit(main())
