from dbp.cli import main

raise SystemExit(main())
