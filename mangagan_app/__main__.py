"""``python -m mangagan_app`` runs the command line (``torchrun`` needs a module)."""

from mangagan_app.cli import main

raise SystemExit(main())
