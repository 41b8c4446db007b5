from hive_core.cli import main

main()
