from unetinspect.cli import main

main()
