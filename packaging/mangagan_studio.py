"""Entry point of the PyInstaller build (``build_installer.py``): the window, or ``--self-test``."""

import multiprocessing

if __name__ == "__main__":
    # The Dataset tab's detector workers are spawned processes: in a frozen build each
    # one starts this program again, and freeze_support() turns it into the worker.
    multiprocessing.freeze_support()
    from mangagan_app.gui.app import main

    raise SystemExit(main())
