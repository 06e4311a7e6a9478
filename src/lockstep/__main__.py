from lockstep.cli.app import main

main()
