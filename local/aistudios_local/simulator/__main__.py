"""``python -m aistudios_local.simulator [--port N] [--video-size N]``."""

from aistudios_local.simulator.facade import main

if __name__ == "__main__":
    main()
