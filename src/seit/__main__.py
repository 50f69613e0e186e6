from seit.cli import main

raise SystemExit(main())
