"""``python -m napari_fibsem.cli ...``: the way torchrun and the event scheduler start a command."""

from napari_fibsem.cli import main

# Guarded: spawned processes (``--nprocs``) re-import the parent's main module as ``__mp_main__``.
if __name__ == "__main__":
    main()
