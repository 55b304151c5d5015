from search.report.cli import main

raise SystemExit(main())
