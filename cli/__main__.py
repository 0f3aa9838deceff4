from honk.cli.main import main

main()
