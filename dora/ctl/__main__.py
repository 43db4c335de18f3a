"""``python -m dora.ctl``: the same as the ``doractl`` console script."""

from dora.ctl.main import main

main()
