from hive_core.cli import main

raise SystemExit(main())
