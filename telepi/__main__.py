from telepi.cli import main

raise SystemExit(main())
