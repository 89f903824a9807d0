from auoms_py.cli import main

raise SystemExit(main())
