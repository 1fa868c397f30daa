"""``python -m tvm_bsp`` is the ``tvm-bsp`` command."""

from tvm_bsp.cli.command import main

raise SystemExit(main())
