"""``python -m tvm_bsp`` is the ``tvm-bsp`` command."""

from tvm_bsp.cli import main

raise SystemExit(main())
