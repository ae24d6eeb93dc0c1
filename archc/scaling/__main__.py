"""``python -m archc.scaling --report``: rerun the scaling study and rewrite its part of docs/scaling.md."""

from archc.scaling.study import main

raise SystemExit(main())
