"""``python -m recommender``: see :mod:`recommender.cli`."""
from .cli import main

raise SystemExit(main())
