from scriptbus.cli import main

main()
